"""Tests of pysim.config.profiles, pysim.config.presets and pysim.errors."""
from __future__ import annotations

import dataclasses
import errno
import pickle

import pytest

import pysim

from pysim.errors import ConfigError, PysimError, SafetyViolation, SyscallError, Violation
from pysim.config.presets import (
    GEOMETRIES, HW_KEYS, KERNEL_KEYS, MAX_FREE_PARAMS, PRESETS, Preset, get_preset,
)
from pysim.config.profiles import CHANGE_WRITABLE_MODES, PROFILES, Profile, get_profile

PATCHES = ("use_mmu_gather", "skip_unneeded_flush", "huge_pmd_ad_no_flush")


# --- profiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, patches, writable", [
    ("mmots", (False, False, False), "none"),
    ("patched", (True, True, True), "none"),
    ("mmu_gather", (True, False, False), "none"),
    ("skip_flush", (True, True, False), "none"),
    ("huge_pmd_ad", (True, False, True), "none"),
    ("v6.0", (True, True, True), "dirty"),
    ("v6.2", (True, True, True), "exclusive"),
])
def test_builtin_profiles_have_the_patch_switches_of_their_kernel(name, patches, writable):
    p = get_profile(name)
    assert p.name == name
    assert tuple(getattr(p, f) for f in PATCHES) == patches
    assert p.change_writable == writable
    assert p.flush_func_early_exit == name.startswith("v6")
    assert not p.flush_tlb_range_freed_tables


def test_profile_defaults_are_the_x86_kernel_defaults():
    for p in PROFILES.values():
        assert (p.tlb_single_page_flush_ceiling, p.nr_dyn_asids) == (33, 6)
        assert p.lazy_tlb and p.merge_vmas_in_gather and not p.pti


def test_cpu_features_are_the_presets_and_machine_overrides_route_them():
    """PCID and INVPCID are hardware (the preset); PTI is a kernel option (the profile).
    Machine(..., pcid=False) and get_preset(..., invpcid=False) both reach the preset;
    a profile asked for a CPU feature says where it lives."""
    from pysim.config.presets import PRESETS, get_preset
    amd = ("milan", "milan-2025", "genoa")          # the parts with INVLPGB
    arm = ("altra", "kunpeng920", "snapdragon888")  # arm64: no INVPCID, no TLBIRANGE
    for pr in PRESETS.values():
        if pr.name in arm:
            assert pr.arch == "arm64" and pr.features == {
                "pcid": True, "invpcid": False, "invlpgb": False, "rar": False,
                "tlbi_range": False}
            continue
        assert pr.arch == "x86" and pr.features == {"pcid": True, "invpcid": True,
                                                    "invlpgb": pr.name in amd,
                                                    "rar": pr.name == "intel-rar",
                                                    "tlbi_range": False}
    assert get_preset("skylake", invpcid=False).features == {"pcid": True, "invpcid": False,
                                                             "invlpgb": False, "rar": False,
                                                             "tlbi_range": False}
    m = pysim.Machine(cpus=1, pcid=False, pti=True)
    assert m.preset.features["pcid"] is False and m.profile.pti is True
    assert m.cfg.pcid is False and m.cfg.invpcid is True
    with pytest.raises(pysim.ConfigError, match="CPU feature"):
        get_profile("patched", pcid=False)
    with pytest.raises(pysim.ConfigError, match="pcid"):
        pysim.Machine(cpus=1, pcidd=False)


def test_release_aliases():
    assert get_profile("v5.17") is PROFILES["mmots"]
    assert get_profile("v5.19") is PROFILES["patched"]


def test_overrides_rename_and_validate():
    p = get_profile("mmots", pti=True, tlb_single_page_flush_ceiling=0)
    assert p.pti and p.tlb_single_page_flush_ceiling == 0
    assert p.name == "mmots[pti=True,tlb_single_page_flush_ceiling=0]"
    assert get_profile(p) is p
    assert get_profile(p, name="mine", lazy_tlb=False).name == "mine"
    assert PROFILES["mmots"].pti is False                     # built-ins are not touched
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.pti = False


def test_unknown_profile_name_lists_the_allowed_names():
    with pytest.raises(ConfigError) as e:
        get_profile("v5.18")
    assert "'v5.18'" in str(e.value) and "mmots" in str(e.value) and "v6.2" in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, PysimError)


def test_unknown_profile_field_is_named():
    with pytest.raises(ConfigError) as e:
        get_profile("patched", use_gather=True)
    assert "'use_gather'" in str(e.value) and "use_mmu_gather" in str(e.value)
    assert e.value.field == "use_gather"


@pytest.mark.parametrize("changes, field", [
    ({"change_writable": "clean"}, "change_writable"),
    ({"arch": "arm64"}, "arch"),
    ({"pcid": 1}, "pcid"),
    ({"nr_dyn_asids": 0}, "nr_dyn_asids"),
    ({"nr_dyn_asids": 4096}, "nr_dyn_asids"),
    ({"tlb_single_page_flush_ceiling": -1}, "tlb_single_page_flush_ceiling"),
])
def test_bad_profile_values_name_the_field(changes, field):
    with pytest.raises(ConfigError) as e:
        get_profile("patched", **changes)
    assert e.value.field == field and field in str(e.value)


def test_change_writable_error_lists_the_modes():
    with pytest.raises(ConfigError) as e:
        get_profile("v6.2", change_writable="always")
    assert all(mode in str(e.value) for mode in CHANGE_WRITABLE_MODES)


@pytest.mark.parametrize("base, changes, field", [
    ("mmots", {"skip_unneeded_flush": True}, "skip_unneeded_flush"),
    ("mmots", {"huge_pmd_ad_no_flush": True}, "huge_pmd_ad_no_flush"),
    ("patched", {"use_mmu_gather": False}, "skip_unneeded_flush"),
    ("mmu_gather", {"change_writable": "exclusive"}, "change_writable"),
])
def test_patch_combinations_no_kernel_had_are_rejected(base, changes, field):
    with pytest.raises(ConfigError) as e:
        get_profile(base, **changes)
    assert e.value.field == field and "use_mmu_gather" in str(e.value)


def test_profile_round_trips_through_pickle_and_dict():
    p = get_profile("v6.2", pti=True)
    assert pickle.loads(pickle.dumps(p)) == p
    assert Profile(**p.as_dict()) == p


# --- presets -----------------------------------------------------------------------------

def test_builtin_presets_exist_with_valid_geometry():
    assert {"skylake", "zen3", "kvm-2022"} <= set(PRESETS)
    assert PRESETS["kvm-2022"].geometry == "skylake-kvm"
    assert PRESETS["skylake"].geometry == "skylake" and PRESETS["zen3"].geometry == "zen3"
    assert all(p.geometry in GEOMETRIES for p in PRESETS.values())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_value_has_a_source(name):
    p = PRESETS[name]
    assert tuple(p.hw) == HW_KEYS and tuple(p.kernel) == KERNEL_KEYS
    for key in HW_KEYS + KERNEL_KEYS + ("ghz",):
        assert len(p.sources[key].strip()) > 10, key
    for key, value in p.costs().items():
        assert isinstance(value, (int, float)) and value >= 0, key


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_derived_values_agree_with_their_arithmetic(name):
    if name == "this-host":
        # measured and fitted on this machine (pysim calibrate), not SPEC arithmetic
        from pysim.host.calibrate import DIRECT, FREE
        p = PRESETS[name]
        assert all(p.sources[k].startswith("fitted") for k in FREE)
        assert all(p.sources[k].startswith("measured") for k, _ in DIRECT)
        return
    if name == "kvm-2022":
        # calibrated: the fitted values replace the starting arithmetic, sources say so
        from pysim.config.presets import KVM_2022_FIT
        p = PRESETS[name]
        for key, value in KVM_2022_FIT.items():
            assert p.cost(key) == value and p.sources[key].startswith("fitted")
        name = "kvm-2022-start"
    if name == "milan-2025":
        # calibrated on invlpgb-2025's training cells: the fit replaces the arithmetic
        from pysim.config.presets import MILAN_2025_FIT
        p = PRESETS[name]
        for key, value in MILAN_2025_FIT.items():
            if key == "smt_speed":                  # a field, not a cost
                assert p.smt_speed == value and f"smt_speed fitted" in p.description
                continue
            assert p.cost(key) == value and p.sources[key].startswith("fitted")
        name = "milan"
    if name == "skylake-lkp-2024":
        # calibrated on lazy-cpumask-2024's training cell: the fit replaces the arithmetic
        from pysim.config.presets import SKYLAKE_LKP_2024_FIT
        p = PRESETS[name]
        for key, value in SKYLAKE_LKP_2024_FIT.items():
            assert p.cost(key) == value and p.sources[key].startswith("fitted")
        name = "skylake"
    p = PRESETS[name]
    assert p.cost("walk_base") + p.cost("walk_ref") == 45                 # warm-PSC walk
    if p.arch == "arm64":
        # the arm64 flush path: its own assumed costs, the DVM wait per CPU of the part
        cores = int(p.description.split("cpus=")[1].split(")")[0])
        assert p.cost("flush_per_page") + p.cost("tlbi") == 30
        assert str(cores * p.cost("dvm_per_cpu")) in p.sources["dvm_per_cpu"]
        return
    assert p.cost("flush_per_page") + p.cost("invlpg") == 250             # per flushed page
    no_flush_mprotect = sum(p.cost(k) for k in ("syscall", "mprotect_base", "per_vma",
                                                "per_pmd_table", "per_pte"))
    assert no_flush_mprotect == 1500
    anon_fault = p.cost("fault_hw") + p.cost("fault_base") + p.cost("fault_anon")
    assert 2000 <= anon_fault <= 3200
    one_remote = sum(p.cost(k) for k in ("ipi_send", "ipi_deliver", "ipi_handler",
                                         "invlpg", "ipi_ack"))
    if name == "kvm-2022-start":
        assert one_remote == 5100
        assert p.cost("flush_base") + p.cost("flush_per_page") + p.cost("invlpg") == 3952 - 2724
    else:
        assert one_remote == round(775 * p.ghz)
        assert p.cost("flush_base") == 1150
    assert p.cost("ipi_extra_target") == round(70 * p.ghz)


def test_kvm_preset_names_at_most_five_free_parameters():
    p = PRESETS["kvm-2022"]
    assert 0 < len(p.free_params) <= MAX_FREE_PARAMS
    assert set(p.free_params) <= set(HW_KEYS + KERNEL_KEYS)


def test_preset_override_changes_value_source_and_name_only_in_the_copy():
    base = PRESETS["skylake"]
    p = get_preset("skylake", invlpg=150, ipi_deliver=2000)
    assert p.hw["invlpg"] == 150 and p.kernel["ipi_deliver"] == 2000
    assert p.sources["invlpg"].startswith("override") and "SPEC" in p.sources["invlpg"]
    assert p.name == "skylake[invlpg=150,ipi_deliver=2000]"
    assert base.hw["invlpg"] == 100 and not base.sources["invlpg"].startswith("override")
    assert get_preset(p) is p
    assert pickle.loads(pickle.dumps(p)) == p


def test_preset_copies_callers_dicts():
    base = PRESETS["skylake"]
    hw = dict(base.hw)
    p = base.replace(name="copy", hw=hw)
    hw["invlpg"] = 9999
    assert p.hw["invlpg"] == 100


def test_unknown_preset_and_keys_are_named():
    with pytest.raises(ConfigError) as e:
        get_preset("haswell")
    assert "'haswell'" in str(e.value) and "kvm-2022" in str(e.value)
    with pytest.raises(ConfigError) as e:
        get_preset("skylake", invlpg_cost=1)
    assert e.value.field == "invlpg_cost" and "invlpg" in str(e.value)
    with pytest.raises(ConfigError) as e:
        PRESETS["skylake"].cost("tlb_miss")
    assert "'tlb_miss'" in str(e.value)


@pytest.mark.parametrize("changes, field", [
    ({"geometry": "icelake"}, "geometry"),
    ({"invlpg": -1}, "invlpg"),
    ({"syscall": True}, "syscall"),
    ({"ghz": 0}, "ghz"),
    ({"free_params": ("walk_ref", "nope")}, "free_params"),
    ({"free_params": ("syscall", "walk_ref", "walk_base", "invlpg", "flush_base",
                      "ipi_send", "per_pte", "per_vma", "ipi_ack")}, "free_params"),
])
def test_bad_preset_values_name_the_field(changes, field):
    with pytest.raises(ConfigError) as e:
        get_preset("kvm-2022", **changes)
    assert e.value.field == field and field.split("_")[0] in str(e.value)


def test_preset_missing_cost_or_source_is_rejected():
    base = PRESETS["skylake"]
    hw = {k: v for k, v in base.hw.items() if k != "stlb_hit"}
    with pytest.raises(ConfigError) as e:
        Preset(name="x", geometry="skylake", ghz=3.0, hw=hw, kernel=base.kernel,
               sources=base.sources)
    assert e.value.field == "stlb_hit"
    sources = {k: v for k, v in base.sources.items() if k != "per_pte"}
    with pytest.raises(ConfigError) as e:
        Preset(name="x", geometry="skylake", ghz=3.0, hw=base.hw, kernel=base.kernel,
               sources=sources)
    assert e.value.field == "per_pte" and "sources" in str(e.value)


# --- errors ------------------------------------------------------------------------------

def test_syscall_error_is_an_oserror_with_the_kernel_errno():
    e = SyscallError(errno.ENOMEM, "mprotect: range [0x1000,0x3000) has a hole at 0x2000")
    assert isinstance(e, OSError) and isinstance(e, PysimError)
    assert e.errno == errno.ENOMEM
    assert str(e) == "[ENOMEM] mprotect: range [0x1000,0x3000) has a hole at 0x2000"
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is SyscallError and again.errno == errno.ENOMEM


def test_safety_violation_carries_and_reports_its_records():
    records = [Violation(cpu=c, va=0x7f0000001000, tlb_entry=0x8000000000001067, pte=0x25,
                         operation="mprotect#3", reason="RW cached, PTE read-only")
               for c in range(7)]
    e = SafetyViolation(records)
    assert isinstance(e, AssertionError) and isinstance(e, PysimError)
    assert e.violations == records
    text = str(e)
    assert text.startswith("7 TLB safety violations")
    assert "cpu 0 va 0x7f0000001000 after mprotect#3" in text and "pte 0x25" in text
    assert "and 2 more" in text
    assert pickle.loads(pickle.dumps(e)).violations == records


def test_invlpgb_names_the_feature_and_the_costs_have_their_own_names():
    """Preset.replace(invlpgb=...) sets the CPU feature (the INVLPGB costs are
    invlpgb_issue and tlbsync_wait), and each cost still replaces on its own."""
    from pysim.config.presets import COST_KEYS, FEATURES
    assert not set(COST_KEYS) & set(FEATURES)
    milan = get_preset("milan")
    off = milan.replace(invlpgb=False)
    assert off.features["invlpgb"] is False and milan.features["invlpgb"] is True
    assert off.costs() == milan.costs()
    cheap = milan.replace(invlpgb_issue=50.0, tlbsync_wait=700.0)
    assert cheap.cost("invlpgb_issue") == 50.0 and cheap.cost("tlbsync_wait") == 700.0
    assert cheap.features["invlpgb"] is True
    assert cheap.sources["tlbsync_wait"].startswith("override")


def test_change_huge_pmd_defaults_to_what_the_model_charged_before():
    """Built-in presets price change_huge_pmd as a PTE table's section plus one entry
    (per_pmd_table + per_pte of the preset's starting table), so their fits stand."""
    for name in ("skylake", "zen3", "kvm-2022-start", "milan"):
        p = get_preset(name)
        assert p.cost("change_huge_pmd") == p.cost("per_pmd_table") + p.cost("per_pte")
    assert "measured" in get_preset("this-host").sources["change_huge_pmd"]


def test_a_preset_file_that_cannot_be_read_is_one_error_naming_it(tmp_path):
    from pysim.config import get_preset
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    for path, words in ((tmp_path / "none.toml", "not found"), (folder, "directory"),
                        (bad, "not UTF-8")):
        with pytest.raises(ConfigError, match=words) as e:
            get_preset(str(path))
        assert "preset" in str(e.value)


def test_a_preset_file_from_before_ttwu_gets_it_derived(tmp_path):
    import pathlib
    from pysim.config.presets import load_preset_file
    src = pathlib.Path(pysim.__file__).parent / "config" / "data" / "this-host.toml"
    old = "".join(line for line in src.read_text().splitlines(keepends=True)
                  if not line.startswith("ttwu ="))
    path = tmp_path / "old.toml"
    path.write_text(old)
    p = load_preset_file(str(path))
    assert p.kernel["ttwu"] == p.kernel["ipi_send"] + round(300 * p.ghz)
    assert "predates ttwu" in p.sources["ttwu"]
