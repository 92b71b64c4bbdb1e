"""KVM's paravirtual TLB flush (arch/x86/kernel/kvm.c kvm_flush_tlb_multi), the preset
option kvm_pv_preempt: a target vCPU found preempted gets its flush deferred to its next
entry instead of an IPI (issue 13)."""
import pytest

import pysim
from pysim import PROT_READ, PROT_WRITE
from pysim.errors import ConfigError

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def seed_loop(chance, seed=0, rounds=200, threads=2):
    """The seed loop with a second thread spinning in user space on CPU 1 (and a third
    on CPU 2 with threads=3); returns (machine, summed events over the mprotects)."""
    preset = pysim.get_preset("kvm-2022", kvm_pv_preempt=chance)
    m = pysim.Machine(cpus=threads, preset=preset, profile="v6.2", seed=seed)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    for c in range(1, threads):
        proc.thread(cpu=c).busy()
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    total = {"ipi_sent": 0, "kvm_pv_flush": 0, "nr_tlb_remote_flush": 0,
             "nr_tlb_remote_flush_received": 0}
    for _ in range(rounds):
        for prot in (PROT_READ, RW):
            ev = t0.mprotect(p, PAGE, prot).events
            for k in total:
                total[k] += int(ev[k])
        t0.write(p)
    return m, total


def test_off_by_default_every_target_gets_its_ipi():
    """kvm_pv_preempt 0 (every built-in preset): one IPI per flush, no deferred flush."""
    assert pysim.get_preset("kvm-2022").kvm_pv_preempt == 0.0
    m, ev = seed_loop(0.0, rounds=20)
    assert ev["kvm_pv_flush"] == 0 and ev["ipi_sent"] == 40
    assert ev["nr_tlb_remote_flush_received"] == 40


def test_a_preempted_target_is_flushed_without_an_ipi():
    """With chance 0.3 about 30% of the 400 flushes find vCPU 1 preempted: those send no
    IPI and run no flush_tlb_func there, the rest do; every flush still calls
    flush_tlb_multi (nr_tlb_remote_flush); the checker finds no stale translation."""
    m, ev = seed_loop(0.3)
    assert ev["nr_tlb_remote_flush"] == 400
    assert ev["kvm_pv_flush"] + ev["ipi_sent"] == 400
    assert 80 <= ev["kvm_pv_flush"] <= 160
    assert ev["nr_tlb_remote_flush_received"] == ev["ipi_sent"]
    assert m.check() == []


def test_the_draws_come_from_the_machines_seed():
    """Same seed, same preemptions; another seed, another sequence."""
    _, a = seed_loop(0.3, seed=7)
    _, b = seed_loop(0.3, seed=7)
    _, c = seed_loop(0.3, seed=8)
    assert a == b
    assert a != c


def test_each_target_is_drawn_on_its_own():
    """Two spinning vCPUs: each flush draws for each; IPIs go only to the running ones
    (one send when one of the two is preempted)."""
    m, ev = seed_loop(0.5, rounds=100, threads=3)
    assert ev["kvm_pv_flush"] + ev["nr_tlb_remote_flush_received"] == 400
    assert 0 < ev["kvm_pv_flush"] < 400
    assert m.check() == []


def test_the_deferred_flush_empties_the_targets_tlb():
    """A preempted target loses its cached translations: its next access walks."""
    preset = pysim.get_preset("kvm-2022", kvm_pv_preempt=0.999)
    m = pysim.Machine(cpus=2, preset=preset, profile="v6.2")
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.read(p)
    assert t1.read(p).events["walks"] == 0          # cached on CPU 1
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["kvm_pv_flush"] == 1 and r.events["ipi_sent"] == 0
    assert t1.read(p).events["walks"] == 1
    assert m.check() == []


def test_the_option_is_for_vm_presets_and_a_chance():
    """Bare metal has no PV flush; the value must lie in [0, 1); TOML round trip."""
    with pytest.raises(ConfigError, match="KVM guest"):
        pysim.get_preset("skylake", kvm_pv_preempt=0.1)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        pysim.get_preset("kvm-2022", kvm_pv_preempt=1.0)
    from pysim.config.toml_preset import preset_from_dict, preset_to_toml
    import sys
    tomllib = __import__("tomllib" if sys.version_info >= (3, 11) else "tomli")
    p = pysim.get_preset("kvm-2022", kvm_pv_preempt=0.25)
    q = preset_from_dict(tomllib.loads(preset_to_toml(p)))
    assert q.kvm_pv_preempt == 0.25 and q.costs() == p.costs()
