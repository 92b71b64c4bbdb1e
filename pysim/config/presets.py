"""Hardware and cost presets: TLB geometry name plus every cycle cost, each with its source.

All cycle constants of the simulator live here (DESIGN: "no cycle constant hides in the
code"). `hw` holds costs the hardware model (mmucore) charges per event; `kernel` holds
kernel-path costs pysim charges per syscall, VMA, entry, flush, IPI or fault. Walk
costs and refill misses are never folded into these: they come from TLB events.

How the costs compose (the cost model must follow this):
- an access costs l1_hit, or stlb_hit, or walk_base + walk_ref * (memory references of
  the walk, up to 24 for a nested walk); a #PF adds fault_hw;
- a fault costs fault_hw + fault_base + one of fault_anon / fault_zero_page /
  fault_thp / fault_wp_reuse / fault_cow_copy / fault_spurious;
- a local flush costs flush_base + (flush_per_page + invlpg) per page, or flush_base +
  cr3_flush for a full flush; a remote target adds ipi_send + ipi_deliver +
  ipi_handler + its own invalidations (invlpg_remote per page) + ipi_ack, and each
  further target ipi_extra_target;
- a syscall costs syscall (+ pti_cr3_switch with PTI) + its *_base + per-item costs:
  change_protection per_vma for the call's first VMA and per_extra_vma for each
  further one, per_pmd_table per PTE table, per_pte per present entry, per_pte_none per
  empty slot scanned, can_change_pte_writable per write-upgrade check (6.0+),
  change_huge_pmd per huge PMD; a zap
  (munmap, MADV_DONTNEED) per_page_zap per present 4K entry, zap_huge_pmd per huge
  PMD, per_pte_none per empty slot, plus every flush the gather's batches force.

Figures quoted from SPEC section 5 are the project's starting points; everything else
is marked "assumption" and uncalibrated. Derived values show their arithmetic.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

from ..errors import ConfigError
from .tomlfile import read_toml

__all__ = ["Preset", "PRESETS", "get_preset", "HW_KEYS", "KERNEL_KEYS", "GEOMETRIES",
           "MAX_FREE_PARAMS", "FEATURES", "ARCHES", "load_preset_file", "preset_from_dict"]

HW_KEYS: Tuple[str, ...] = (
    "l1_hit", "stlb_hit", "walk_base", "walk_ref", "invlpg", "invpcid_single",
    "cr3_flush", "cr3_noflush", "flush_global", "fault_hw",
    "invlpg_remote",
)
KERNEL_KEYS: Tuple[str, ...] = (
    "syscall", "pti_cr3_switch", "mprotect_base", "per_vma", "per_pte", "per_pmd_table",
    "vma_split", "vma_merge", "flush_base", "flush_per_page", "ipi_send", "ipi_deliver",
    "ipi_handler", "ipi_ack", "ipi_extra_target", "fault_base", "fault_anon",
    "fault_zero_page", "fault_wp_reuse", "fault_cow_copy", "fault_spurious", "mmap_base",
    "munmap_base", "madvise_base", "per_page_zap", "context_switch",
    "cacheline_transfer", "cacheline_per_writer", "cacheline_remote", "lock_handoff", "ttwu",
    "lru_lock_hold",
    "idle_exit",
    "invlpgb_issue", "tlbsync_wait",
    "per_extra_vma", "per_pte_none", "can_change_pte_writable", "zap_huge_pmd", "fault_thp",
    "change_huge_pmd",
    "rar_send", "rar_extra_target", "rar_deliver", "rar_handle",
    "tlbi", "dsb_ish", "dvm_per_cpu",
)
# costs only the arm64 arch charges (pysim.arch.arm64): an x86 preset holds them at 0
ARM64_KEYS: Tuple[str, ...] = ("tlbi", "dsb_ish", "dvm_per_cpu")
COST_KEYS: Tuple[str, ...] = HW_KEYS + KERNEL_KEYS
# TLB geometries mmucore.tlb provides (skylake-kvm / zen3-kvm: same TLBs, 2D walk).
GEOMETRIES: Tuple[str, ...] = ("skylake", "zen3", "skylake-kvm", "zen3-kvm", "neoverse-n1")
# SPEC section 5 asked for at most five free parameters (kvm-2022 fits four); issue 13's
# host calibration (pysim calibrate) allows at most eight
MAX_FREE_PARAMS = 8
# CPU features a preset's hardware has or lacks (the kernel uses what is there):
# pcid - tagged TLB entries, so a switch need not flush; invpcid - INVPCID, which PTI
# uses to flush one user-PCID entry at once instead of deferring to the exit to user;
# invlpgb - AMD INVLPGB/TLBSYNC broadcast invalidation (Zen 3 and later), which a 6.15+
# kernel uses for mms with a global ASID; rar - Intel Remote Action Request, which the
# RAR RFC kernel (profile rar-rfc) uses for mms with a global ASID; tlbi_range - arm64
# FEAT_TLBIRANGE (range TLBI instructions, which also lift the MAX_DVM_OPS ceiling).
FEATURES: Dict[str, bool] = {"pcid": True, "invpcid": True, "invlpgb": False, "rar": False,
                             "tlbi_range": False}
ARCHES: Tuple[str, ...] = ("x86", "arm64")
# Preset.replace(**changes) takes fields, costs and features by bare name, so no name may
# be two of them (the INVLPGB costs are invlpgb_issue / tlbsync_wait, not the feature's
# name invlpgb)
if set(COST_KEYS) & set(FEATURES):                      # pragma: no cover - a coding error
    raise ImportError(f"cost keys shadow CPU features: {set(COST_KEYS) & set(FEATURES)}")
# what a calibration may fit: the costs, and the one numeric field that is a cost in
# all but its unit (the share of a core an SMT thread keeps beside a busy sibling)
FITTABLE_FIELDS = ("smt_speed",)
FITTABLE: Tuple[str, ...] = COST_KEYS + FITTABLE_FIELDS
_FIELDS = ("name", "geometry", "ghz", "hw", "kernel", "sources", "free_params",
           "description", "features", "arch", "invlpgb_count_max", "kvm_pv_preempt",
           "asid_bits", "smt_speed", "cores_per_llc")


@dataclass(frozen=True)
class Preset:
    """A hardware + cost set: geometry name, clock, hw and kernel cycle costs, sources.

    `sources` maps every cost key (and "ghz") to a one-line citation or derivation;
    `free_params` names the costs (or smt_speed) a calibration may fit (at most
    MAX_FREE_PARAMS).
    """

    name: str
    geometry: str
    ghz: float
    hw: Dict[str, float]
    kernel: Dict[str, float]
    sources: Dict[str, str]
    free_params: Tuple[str, ...] = ()
    description: str = ""
    features: Dict[str, bool] = dataclasses.field(default_factory=lambda: dict(FEATURES))
    arch: str = "x86"
    # pages one INVLPGB may name: CPUID 0x80000008 EDX[15:0] + 1 (the kernel's
    # invlpgb_count_max); read only with the invlpgb feature
    invlpgb_count_max: int = 1
    # KVM's paravirtual TLB flush (arch/x86/kernel/kvm.c kvm_flush_tlb_multi), an option
    # of VM presets (a "-kvm" geometry): the chance that a flush finds a target vCPU
    # preempted by the host, which then gets KVM_VCPU_FLUSH_TLB (flushed at its next
    # entry) instead of an IPI.  Drawn from the machine's seeded generator; 0: off.
    kvm_pv_preempt: float = 0.0
    # arm64: ASID width (ID_AA64MMFR0_EL1.ASIDBits: 8 or 16); read only by arch arm64
    asid_bits: int = 16
    # SMT: the share of its one-thread speed a hardware thread keeps while its sibling
    # is busy too (1.0: no SMT).  Below 1 the machine's CPUs i and i + N/2 are siblings
    # of one core, as Linux numbers them on x86 servers; only the timeline uses it.
    smt_speed: float = 1.0
    # cores that share one last-level cache (a Zen CCX, an Intel socket); a contended
    # line from a CPU of another one costs cacheline_remote (timeline).  0: one for all.
    cores_per_llc: int = 0

    def __post_init__(self) -> None:
        for field in ("hw", "kernel", "sources", "features"):   # private copies
            value = getattr(self, field)
            if not isinstance(value, Mapping):
                raise ConfigError(f"preset {self.name!r}: {field} must be a dict, got "
                                  f"{type(value).__name__}", field=field)
            object.__setattr__(self, field, dict(value))
        object.__setattr__(self, "free_params", tuple(self.free_params))
        # a feature a preset does not name is absent (False unless FEATURES says so)
        object.__setattr__(self, "features", {**FEATURES, **self.features})
        _validate(self)

    def cost(self, key: str) -> float:
        """The cycle cost named key, from hw or kernel."""
        if key in self.hw:
            return self.hw[key]
        if key in self.kernel:
            return self.kernel[key]
        raise ConfigError(f"cost {key!r} unknown; allowed: {', '.join(COST_KEYS)}",
                          field=key, allowed=COST_KEYS)

    def costs(self) -> Dict[str, float]:
        """hw and kernel costs in one flat dict."""
        return {**self.hw, **self.kernel}

    def cycles(self, ns: float) -> float:
        """Convert nanoseconds to cycles at this preset's clock."""
        return ns * self.ghz

    def replace(self, **changes: Any) -> "Preset":
        """A copy with fields or individual cost keys changed (e.g. invlpg=150), validated.

        A changed cost's source becomes "override" plus the old source; the name becomes
        "<name>[k=v,...]" unless a name is given.
        """
        unknown = sorted(set(changes) - set(_FIELDS) - set(COST_KEYS) - set(FEATURES))
        if unknown:
            allowed = _FIELDS + COST_KEYS + tuple(FEATURES)
            raise ConfigError(f"preset field or cost {unknown[0]!r} unknown; allowed: "
                              f"{', '.join(allowed)}", field=unknown[0], allowed=allowed)
        fields = {k: v for k, v in changes.items() if k in _FIELDS}
        hw = dict(fields.pop("hw", self.hw))
        kernel = dict(fields.pop("kernel", self.kernel))
        sources = dict(fields.pop("sources", self.sources))
        features = dict(fields.pop("features", self.features))
        features.update({k: v for k, v in changes.items() if k in FEATURES})
        for key in (k for k in changes if k in COST_KEYS):
            (hw if key in HW_KEYS else kernel)[key] = changes[key]
            sources[key] = f"override: set to {changes[key]} (was: {sources.get(key, '?')})"
        if "name" not in fields:
            tweaks = [f"{k}={v}" for k, v in sorted(changes.items())
                      if k in COST_KEYS or k in FEATURES
                      or k in ("geometry", "ghz", "arch", "invlpgb_count_max",
                               "kvm_pv_preempt", "asid_bits", "smt_speed",
                               "cores_per_llc")]
            if tweaks:
                fields["name"] = f"{self.name}[{','.join(tweaks)}]"
        return dataclasses.replace(self, hw=hw, kernel=kernel, sources=sources,
                                   features=features, **fields)

    def as_dict(self) -> Dict[str, Any]:
        """Flat dict (name, geometry, ghz and every cost) for result rows and sweeps."""
        return {"preset": self.name, "geometry": self.geometry, "ghz": self.ghz,
                "arch": self.arch, **self.features, "invlpgb_count_max": self.invlpgb_count_max,
                **self.costs()}


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_keys(p: Preset, field: str, have: Mapping[str, Any], want: Tuple[str, ...]) -> None:
    """ConfigError unless have's keys are exactly want, naming the first odd key."""
    extra = sorted(set(have) - set(want))
    missing = [k for k in want if k not in have]
    if extra:
        raise ConfigError(f"preset {p.name!r}: {field} key {extra[0]!r} unknown; allowed: "
                          f"{', '.join(want)}", field=extra[0], allowed=want)
    if missing:
        raise ConfigError(f"preset {p.name!r}: {field} lacks key {missing[0]!r}; needs all "
                          f"of: {', '.join(want)}", field=missing[0], allowed=want)


def _validate(p: Preset) -> None:
    """Check names, keys, values, one source per value, and the free parameters."""
    if not isinstance(p.name, str) or not p.name:
        raise ConfigError(f"preset name must be a non-empty string, got {p.name!r}",
                          field="name")
    if p.geometry not in GEOMETRIES:
        raise ConfigError(f"preset {p.name!r}: geometry {p.geometry!r} unknown; allowed: "
                          f"{', '.join(GEOMETRIES)}", field="geometry", allowed=GEOMETRIES)
    if not _is_number(p.ghz) or p.ghz <= 0:
        raise ConfigError(f"preset {p.name!r}: ghz must be a positive number, got {p.ghz!r}",
                          field="ghz")
    if p.arch not in ARCHES:
        raise ConfigError(f"preset {p.name!r}: arch {p.arch!r} unknown; allowed: "
                          f"{', '.join(ARCHES)}", field="arch", allowed=ARCHES)
    _check_keys(p, "features", p.features, tuple(FEATURES))
    for key, value in p.features.items():
        if not isinstance(value, bool):
            raise ConfigError(f"preset {p.name!r}: feature {key} must be True or False, "
                              f"got {value!r}", field=key, allowed=(True, False))
    if isinstance(p.invlpgb_count_max, bool) or not isinstance(p.invlpgb_count_max, int) \
            or not 1 <= p.invlpgb_count_max <= 1 << 16:
        raise ConfigError(f"preset {p.name!r}: invlpgb_count_max must be an integer in "
                          f"[1, 65536] (CPUID 0x80000008 EDX[15:0] + 1), got "
                          f"{p.invlpgb_count_max!r}", field="invlpgb_count_max")
    if not _is_number(p.kvm_pv_preempt) or not 0.0 <= p.kvm_pv_preempt < 1.0:
        raise ConfigError(f"preset {p.name!r}: kvm_pv_preempt must be a chance in [0, 1), "
                          f"got {p.kvm_pv_preempt!r}", field="kvm_pv_preempt")
    if not _is_number(p.smt_speed) or not 0.0 < p.smt_speed <= 1.0:
        raise ConfigError(f"preset {p.name!r}: smt_speed must be a share in (0, 1], got "
                          f"{p.smt_speed!r}", field="smt_speed")
    if isinstance(p.cores_per_llc, bool) or not isinstance(p.cores_per_llc, int) \
            or p.cores_per_llc < 0:
        raise ConfigError(f"preset {p.name!r}: cores_per_llc must be an integer >= 0, got "
                          f"{p.cores_per_llc!r}", field="cores_per_llc")
    if p.kvm_pv_preempt and not p.geometry.endswith("-kvm"):
        raise ConfigError(f"preset {p.name!r}: kvm_pv_preempt needs a KVM guest (a -kvm "
                          f"geometry; {p.geometry!r} is bare metal)", field="kvm_pv_preempt")
    if p.asid_bits not in (8, 16):
        raise ConfigError(f"preset {p.name!r}: asid_bits must be 8 or 16, got "
                          f"{p.asid_bits!r}", field="asid_bits", allowed=(8, 16))
    _check_keys(p, "hw", p.hw, HW_KEYS)
    _check_keys(p, "kernel", p.kernel, KERNEL_KEYS)
    for key, value in p.costs().items():
        if not _is_number(value) or value < 0:
            raise ConfigError(f"preset {p.name!r}: cost {key} must be a number >= 0 "
                              f"(cycles), got {value!r}", field=key)
    _check_keys(p, "sources", p.sources, COST_KEYS + ("ghz",))
    for key, text in p.sources.items():
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"preset {p.name!r}: source of {key} must be a non-empty "
                              f"string", field=key)
    bad = [k for k in p.free_params if k not in FITTABLE]
    if bad:
        raise ConfigError(f"preset {p.name!r}: free parameter {bad[0]!r} is not a cost "
                          f"or smt_speed; allowed: {', '.join(FITTABLE)}",
                          field="free_params", allowed=FITTABLE)
    if len(p.free_params) > MAX_FREE_PARAMS or len(set(p.free_params)) != len(p.free_params):
        raise ConfigError(f"preset {p.name!r}: free_params must name at most "
                          f"{MAX_FREE_PARAMS} distinct costs, got {p.free_params!r}",
                          field="free_params")


# --- the tables: value and source side by side ------------------------------------------
# SPEC section 5 figures used below (the project's cited starting points):
#   INVLPG ~100 cycles; kernel flush path ~1,150 + ~250/page (Ivy Bridge, 2014); dTLB-miss
#   walk ~45 cycles with warm PSCs; STLB hit ~11; nested walk up to 24 refs; one-remote
#   shootdown ~775 ns extra (Haswell bare metal), ~5,100 cycles (2022 KVM guest); ~70 ns
#   per extra same-socket target; minor fault 2,000-3,200 cycles; mprotect without a
#   flush ~1,500 cycles (2022 KVM guest).

def _base_table(ghz: float, guest: bool) -> Dict[str, Tuple[float, str]]:
    """Costs of an x86 core at ghz, bare metal or KVM guest: {key: (cycles, source)}."""
    def ns(n: float) -> int:
        """Nanoseconds as whole cycles at this clock."""
        return round(n * ghz)

    fault_hw, fault_base = ns(100), 700
    fault_anon = 2600 - fault_hw - fault_base
    ipi_send, ipi_handler, ipi_ack, invlpg = 200, 300, ns(50), 100
    remote = ns(775)
    syscall, per_vma, per_pmd_table, per_pte = ns(50), 400, 100, 20
    mprotect_base = 1500 - syscall - per_vma - per_pmd_table - per_pte
    return {
        **{k: (0, "not used on x86: an arm64 broadcast-TLBI cost (pysim.arch.arm64)")
           for k in ARM64_KEYS},
        # hardware
        "l1_hit": (0, "no added latency: the L1 dTLB is read in parallel with the L1D "
                      "(VIPT); SPEC §5 gives no figure"),
        "stlb_hit": (11, "SPEC §5: STLB hit ~11 cycles"),
        "walk_ref": (20, "assumption: one paging-structure read from L1D/L2 (~5/~14 cycles) "
                         "or sometimes L3, ~20 cycles; uncalibrated"),
        "walk_base": (25, "SPEC §5: dTLB-miss walk ~45 cycles with warm PSCs (1 reference): "
                          "45 - walk_ref 20 = 25"),
        "invlpg": (invlpg, "SPEC §5: INVLPG ~100 cycles as an instruction"),
        "invpcid_single": (100, "assumption: INVPCID type 0 does INVLPG's work for a named "
                                "PCID; equal to invlpg (100); uncalibrated"),
        "cr3_flush": (100, "SPEC §5: full flush ~ one INVLPG (100) plus the refills it causes; "
                           "refills come from TLB events, not from this constant"),
        "cr3_noflush": (50, "assumption: serialising CR3 write without invalidation, half a "
                            "flushing one: 100 / 2 = 50; uncalibrated"),
        "flush_global": (200, "assumption: INVPCID type 2 / CR4.PGE toggle also drops global "
                              "entries: 2 x cr3_flush 100 = 200; uncalibrated"),
        "fault_hw": (fault_hw, f"assumption: #PF delivery + IRET ~100 ns x {ghz} GHz = "
                               f"{fault_hw}; uncalibrated"),
        "invlpg_remote": (invlpg, f"SPEC §5 gives one INVLPG figure (~100 cycles): the "
                                  f"same on a remote target (flush_tlb_func in the IPI "
                                  f"handler) as locally, invlpg {invlpg}; a 6.18 KVM guest "
                                  f"on AMD EPYC measured ~140 remote vs ~190 local "
                                  f"(issue 13), a host preset sets both"),
        # kernel: syscalls and mprotect
        "syscall": (syscall, f"assumption: null syscall round trip without PTI ~50 ns x "
                             f"{ghz} GHz = {syscall}"),
        "pti_cr3_switch": (200, "assumption: two no-flush CR3 writes per entry+exit, 2 x "
                                "cr3_noflush 50 = 100, + ~100 for the trampoline stack "
                                "switch = 200"),
        "mprotect_base": (mprotect_base,
                          f"SPEC §5: mprotect without a flush ~1,500 cycles (2022 KVM guest"
                          f"{'' if guest else '; reused: that path takes no VM exits'}): "
                          f"1,500 - syscall "
                          f"{syscall} - per_vma {per_vma} - per_pmd_table {per_pmd_table} - "
                          f"per_pte {per_pte} = {mprotect_base}"),
        "per_vma": (per_vma, "assumption: mprotect_fixup, vma_set_page_prot, "
                             "change_protection_range setup and mmu_notifier start/end"),
        "per_pte": (per_pte, "assumption: atomic get-and-clear, pte_modify and store per "
                             "entry (ptep_modify_prot_start/commit) ~20 cycles"),
        "per_pmd_table": (per_pmd_table, "assumption: pte_offset_map_lock/unlock and the "
                                         "lazy-MMU section around one PTE table (a pass "
                                         "of change_pte_range or zap_pte_range)"),
        "vma_split": (400, "assumption: vm_area_dup + anon_vma_clone + tree insert, about "
                           "per_vma (400); uncalibrated"),
        "vma_merge": (300, "assumption: vma_adjust of one or two neighbours; uncalibrated"),
        # kernel: flushes and IPIs
        "flush_base": (1150, "SPEC §5: kernel flush path ~1,150 + ~250 per page (Ivy Bridge, "
                             "2014): the fixed part"),
        "flush_per_page": (150, "SPEC §5: the ~250 per page includes the INVLPG: 250 - invlpg "
                                "100 = 150"),
        "ipi_send": (ipi_send, "assumption: x2APIC ICR write + smp_call_function_many "
                               "bookkeeping on the initiator"),
        "ipi_deliver": (remote - ipi_send - ipi_handler - invlpg - ipi_ack,
                        f"SPEC §5: one-remote shootdown ~775 ns extra (Haswell bare metal) x "
                        f"{ghz} GHz = {remote}; - ipi_send {ipi_send} - ipi_handler "
                        f"{ipi_handler} - target invlpg {invlpg} - ipi_ack {ipi_ack} = "
                        f"{remote - ipi_send - ipi_handler - invlpg - ipi_ack}"),
        "ipi_handler": (ipi_handler, "assumption: interrupt entry/exit + flush_tlb_func's "
                                     "generation checks on the target"),
        "ipi_ack": (ipi_ack, f"assumption: one cross-core cache-line transfer (~50 ns x "
                             f"{ghz} GHz = {ipi_ack}) for the call-function-data lock"),
        "ipi_extra_target": (ns(70), f"SPEC §5: ~70 ns per extra same-socket target x {ghz} "
                                     f"GHz = {ns(70)}"),
        # kernel: faults
        "fault_base": (fault_base, "assumption: #PF entry/exit, do_user_addr_fault, find_vma, "
                            "handle_mm_fault dispatch; uncalibrated"),
        "fault_anon": (fault_anon, f"SPEC §5: minor fault 2,000-3,200 cycles, midpoint 2,600 "
                                   f"- fault_hw {fault_hw} - fault_base {fault_base} = "
                                   f"{fault_anon} (allocate + zero a page)"),
        "fault_zero_page": (200, "assumption: map the shared zero page read-only, no "
                                 "allocation; uncalibrated"),
        "fault_wp_reuse": (300, "assumption: do_wp_page reuse: page lock, refcount check, "
                                "ptep_set_access_flags (no flush on x86)"),
        "fault_cow_copy": (fault_anon + 400,
                           f"derived: fault_anon {fault_anon} + copying 4 KiB at ~10 "
                           f"bytes/cycle (~400) = {fault_anon + 400}"),
        "fault_spurious": (100, "assumption: handle_pte_fault finds the PTE already allows "
                                "the access; flush_tlb_fix_spurious_fault is a no-op on x86"),
        # kernel: other syscalls and scheduling
        "mmap_base": (mprotect_base + 670,
                      f"assumption: mprotect_base {mprotect_base} + vm_area_alloc, accounting "
                      f"and get_unmapped_area ~670 = {mprotect_base + 670}"),
        "munmap_base": (mprotect_base + 370,
                        f"assumption: mprotect_base {mprotect_base} + unmap_region / "
                        f"free_pgtables setup ~370 = {mprotect_base + 370}"),
        "madvise_base": (mprotect_base, f"assumption: same fixed work as mprotect_base "
                                        f"({mprotect_base})"),
        "per_page_zap": (100, "assumption: zap_pte_range per present PTE: get-and-clear, "
                              "rmap and refcount drop, page queued in the gather"),
        # kernel: CPUs at once (the timeline)
        "cacheline_transfer": (ns(50), f"assumption: one cross-core cache-line transfer "
                                       f"~50 ns x {ghz} GHz = {ns(50)}, as ipi_ack; paid "
                                       f"by each write to a line another CPU wrote last "
                                       f"(tlb_gen, the mmap_lock count)"),
        "cacheline_remote": (ns(50), f"assumption: as cacheline_transfer ({ns(50)}); a "
                                     f"preset with several last-level caches "
                                     f"(cores_per_llc) sets the cross-LLC figure"),
        "cacheline_per_writer": (ns(10), f"assumption: each CPU still queued for a "
                                         f"contended line slows its next hand-over by "
                                         f"~10 ns x {ghz} GHz = {ns(10)} (the throughput of "
                                         f"atomics on one line falls as more cores contend: "
                                         f"David, Guerraoui, Trigonakis, SOSP 2013); "
                                         f"uncalibrated"),
        "lru_lock_hold": (ns(100), f"assumption: one lruvec->lru_lock critical section "
                                   f"(moving a folio batch onto or off the LRU lists, a few "
                                   f"cache misses on folio and list lines) ~100 ns x {ghz} "
                                   f"GHz = {ns(100)}; it only makes other CPUs wait"),
        "idle_exit": (ns(10_000), f"intel_idle skx_cstates: C1E exit_latency 10 us (target "
                                  f"residency 20 us), the state the menu governor picks "
                                  f"for a sleep of tens of microseconds, x {ghz} GHz = "
                                  f"{ns(10_000)}; an IPI to a sleeping CPU waits this "
                                  f"long for its handler"),
        "lock_handoff": (ns(1000), f"assumption: a waiter on a contended rwsem is woken "
                                   f"and scheduled ~1 us x {ghz} GHz = {ns(1000)} after "
                                   f"the holder releases; uncalibrated"),
        "ttwu": (ipi_send + ns(300), f"assumption: the waker's try_to_wake_up() of one "
                                     f"rwsem waiter on an idle CPU: its wake-list entry "
                                     f"and reschedule IPI (ipi_send {ipi_send}) plus ~300 "
                                     f"ns of pi_lock and task-struct misses x {ghz} GHz = "
                                     f"{ipi_send + ns(300)}; uncalibrated"),
        "context_switch": (ns(500), f"assumption: scheduler + switch_mm fixed work ~0.5 us x "
                                    f"{ghz} GHz = {ns(500)}; the CR3 write and refills come "
                                    f"from events"),
        # kernel: AMD broadcast invalidation (charged only with the invlpgb feature)
        "invlpgb_issue": (invlpg, f"assumption: issuing one INVLPGB costs the issuer about an "
                            f"INVLPG ({invlpg}); the remote invalidation is asynchronous; "
                            f"uncalibrated"),
        "tlbsync_wait": (ns(500), f"assumption: TLBSYNC waits for every CPU's TLB to process the "
                             f"broadcasts, one fabric round trip ~0.5 us x {ghz} GHz = "
                             f"{ns(500)}, below the IPI round trip (~775 ns); uncalibrated"),
        "per_extra_vma": (per_vma, f"assumption: each further VMA of one mprotect costs "
                                   f"what the first does (per_vma {per_vma}), the model "
                                   f"before the two were split; issue 13 measured multi-VMA "
                                   f"calls 26-48% above that on a 6.18 KVM guest, so a "
                                   f"preset fitted to K-VMA cells sets it lower"),
        "per_pte_none": (9, "issue 13: ~9 cycles per empty PTE slot change_pte_range / "
                            "zap_pte_range scan (a span mprotect with only its first and "
                            "last page present), measured on a 6.18 KVM guest, AMD EPYC"
                            + ("" if guest else "; reused for bare metal (a slot scan "
                                                "takes no VM exit)")),
        "can_change_pte_writable": (15, "assumption: the 6.0+ write-upgrade check per PTE "
                                        "(vm_normal_page + PageAnonExclusive: one struct-"
                                        "page cache line, ~15 cycles warm); uncalibrated "
                                        "(issue 13: without it PROT_READ|WRITE over many "
                                        "pages comes out 15-33% low)"),
        "zap_huge_pmd": (round(512 * 100 / 14),
                         "issue 13: a huge-PMD zap measured ~14x cheaper than 512 4K "
                         "zaps at per_page_zap 100 on a 6.18 KVM guest (zap_huge_pmd "
                         "clears one entry and frees one folio): 512 x 100 / 14 = "
                         f"{round(512 * 100 / 14)}"),
        "change_huge_pmd": (per_pmd_table + per_pte,
                            f"assumption: change_huge_pmd() costs a PTE table's lock "
                            f"section plus one entry (per_pmd_table {per_pmd_table} + "
                            f"per_pte {per_pte}), what the model charged before the huge "
                            f"PMD had its own cost; uncalibrated"),
        "fault_thp": (500_000 - fault_hw - fault_base,
                      f"issue 13: a THP first-touch fault ~0.5M cycles on a 6.18 KVM guest, "
                      f"AMD EPYC (clear_huge_page zeroes 512 subpages, ~2 MiB at ~4 "
                      f"bytes/cycle): 500,000 - fault_hw {fault_hw} - fault_base "
                      f"{fault_base} = {500_000 - fault_hw - fault_base}"
                      + ("" if guest else "; reused for bare metal")),
        # kernel: Intel RAR (charged only with the rar feature and profile rar-rfc)
        "rar_send": (ipi_send, f"assumption: the RAR initiator writes one payload line, "
                               f"arms the first target's action entry and writes the APIC "
                               f"command, about an IPI send (ipi_send {ipi_send}); the RFC "
                               f"gives no numbers; uncalibrated"),
        "rar_extra_target": (ns(70), f"assumption: each further target costs arming and "
                                     f"polling its action entry, as an extra IPI target: "
                                     f"~70 ns x {ghz} GHz = {ns(70)}; uncalibrated"),
        "rar_deliver": ((remote - ipi_send - ipi_handler - invlpg - ipi_ack) // 2,
                        f"assumption: the APIC message travels as an IPI does but no "
                        f"interrupt entry follows on the target: half of ipi_deliver "
                        f"({remote - ipi_send - ipi_handler - invlpg - ipi_ack}) = "
                        f"{(remote - ipi_send - ipi_handler - invlpg - ipi_ack) // 2}; "
                        f"uncalibrated"),
        "rar_handle": (100, "assumption: the target's microcode reads the action vector and "
                            "the payload (two cache lines), ~100 cycles besides the "
                            "invalidations (charged per page or PCID as INVPCID); "
                            "uncalibrated"),
    }


def _build(name: str, geometry: str, ghz: Tuple[float, str],
           table: Dict[str, Tuple[float, str]], free_params: Tuple[str, ...] = (),
           description: str = "", **fields: Any) -> Preset:
    """Split a {key: (value, source)} table into a Preset's hw, kernel and sources
    (fields: other Preset fields, e.g. features)."""
    return Preset(
        name=name, geometry=geometry, ghz=ghz[0],
        hw={k: table[k][0] for k in HW_KEYS},
        kernel={k: table[k][0] for k in KERNEL_KEYS},
        sources={"ghz": ghz[1], **{k: table[k][1] for k in COST_KEYS}},
        free_params=free_params, description=description, **fields,
    )


def _skylake() -> Preset:
    """Intel Skylake server core, bare metal: sockets of 26 cores (the kernel test
    robot's 104-thread, 2-socket lkp-skl-fpga01), SMT2."""
    table = _base_table(3.0, guest=False)
    table["cacheline_remote"] = (420, "assumption: a line from the other socket over UPI "
                                      "~140 ns x 3.0 GHz = 420 (cores_per_llc 26: one LLC "
                                      "per socket); uncalibrated")
    return _build("skylake", "skylake",
                  (3.0, "assumption: a Skylake core at 3.0 GHz; only converts the ns "
                        "figures into cycles"),
                  table, cores_per_llc=26,
                  description="Skylake bare metal, ~3 GHz; SMT2 (smt_speed "
                              f"{SMT_SPEED})", smt_speed=SMT_SPEED)


def _zen3() -> Preset:
    """AMD Zen 3 core, bare metal: Skylake's kernel costs, no Zen 3 figures in SPEC §5."""
    table = {k: (v, f"{s} [Intel-era value reused: no Zen 3 figure in SPEC §5]")
             for k, (v, s) in _base_table(3.5, guest=False).items()}
    return _build("zen3", "zen3",
                  (3.5, "assumption: a Zen 3 core at 3.5 GHz; only converts the ns figures "
                        "into cycles (Intel-era ns figures reused, uncalibrated)"),
                  table, description="Zen 3 bare metal, ~3.5 GHz; Intel-derived costs")


# AMD EPYC parts with INVLPGB.  The geometry is zen3's for both (mmucore has no Zen 4
# TLB geometry yet); the kernel costs are the Intel-era starting values, as for zen3.
# INVLPGB_COUNT_MAX is an assumption: the kernel reads it from CPUID 0x80000008 EDX.
INVLPGB_COUNT_MAX = 8


# assumption: two busy hyperthreads of one core do ~1.2x the work of one thread alone
# on kernel-heavy code, so each keeps ~0.6 of its speed; uncalibrated
SMT_SPEED = 0.6


def _amd(name: str, ghz: float, part: str) -> Preset:
    """A bare-metal AMD EPYC preset with the invlpgb feature: CCXs of 8 cores (Zen 3
    and Zen 4 share one L3 among 8 cores)."""
    table = {k: (v, f"{s} [Intel-era value reused: no {part} figure in SPEC §5]")
             for k, (v, s) in _base_table(ghz, guest=False).items()}
    table["cacheline_remote"] = (round(100 * ghz), f"assumption: a line from a core of "
                                 f"another CCX goes through the I/O die, ~100 ns against "
                                 f"~20-50 ns within one (core-to-core latency tests of "
                                 f"EPYC 7003) x {ghz} GHz = {round(100 * ghz)}; "
                                 f"uncalibrated")
    return _build(name, "zen3",
                  (ghz, f"assumption: an {part} core at {ghz} GHz; only converts the ns "
                        f"figures into cycles"),
                  table, features={**FEATURES, "invlpgb": True},
                  invlpgb_count_max=INVLPGB_COUNT_MAX, cores_per_llc=8,
                  description=f"{part} bare metal with INVLPGB/TLBSYNC, ~{ghz} GHz; "
                              f"invlpgb_count_max {INVLPGB_COUNT_MAX} (assumption); "
                              f"Intel-derived costs")


def _milan() -> Preset:
    """AMD EPYC 7003 (Zen 3, Milan): the INVLPGB series measured "an AMD Milan system
    with 36 cores", 72 CPUs with SMT (use Machine(cpus=72, preset="milan"))."""
    p = _amd("milan", 3.0, "EPYC 7003 (Zen 3, Milan)")
    return dataclasses.replace(p, description=p.description + "; the INVLPGB series ran "
                               "36 cores, 72 CPUs (SMT2): Machine(cpus=72)",
                               smt_speed=SMT_SPEED)


def _genoa() -> Preset:
    """AMD EPYC 9004 (Zen 4, Genoa), with Zen 3's TLB geometry."""
    p = _amd("genoa", 3.0, "EPYC 9004 (Zen 4, Genoa)")
    return dataclasses.replace(p, description=p.description + "; Zen 3 TLB geometry "
                               "(no Zen 4 geometry in mmucore)")


def _kvm_2022() -> Preset:
    """The cover letter's KVM guest (2022): uncalibrated starting values for the fit."""
    table = _base_table(3.0, guest=True)
    ipi_send, ipi_handler, invlpg, ipi_ack = 1200, table["ipi_handler"][0], \
        table["invlpg"][0], table["ipi_ack"][0]
    deliver = 5100 - ipi_send - ipi_handler - invlpg - ipi_ack
    per_page = table["flush_per_page"][0]
    flush_base = (3952 - 2724) - invlpg - per_page
    table.update({
        "ipi_send": (ipi_send, "assumption: the guest's ICR write exits to KVM (VM exit, "
                               "emulation, vCPU kick) ~1,200 cycles; uncalibrated"),
        "ipi_deliver": (deliver, f"SPEC §5: one-remote shootdown ~5,100 cycles in the 2022 "
                                 f"KVM guest (9,075 - 3,952 = 5,123; 7,788 - 2,725 = 5,063); "
                                 f"5,100 - ipi_send {ipi_send} - ipi_handler {ipi_handler} - "
                                 f"target invlpg {invlpg} - ipi_ack {ipi_ack} = {deliver}"),
        "flush_base": (flush_base, f"cover letter via kernel-semantics 8.3: local flush path "
                                   f"3,952 - 2,724 = 1,228 cycles in the guest; - invlpg "
                                   f"{invlpg} - flush_per_page {per_page} = {flush_base}"),
    })
    table["can_change_pte_writable"] = (
        0, "0: the cover letter's kernels (5.17 mmots, 5.19 patched) have no write-upgrade "
           "check (6.0+), and no measurement of this guest prices it; 0 keeps pysim "
           "reproduce's v6.2 rows as they were")
    free = ("mprotect_base", "flush_base", "ipi_deliver", "walk_ref")
    return _build("kvm-2022", "skylake-kvm",
                  (3.0, "assumption: the cover letter does not name the host CPU; 3.0 GHz "
                        "only converts the ns figures into cycles"),
                  table, free_params=free,
                  description="KVM guest of the v6 cover letter (2022), uncalibrated; "
                              "free_params: one per effect in the table (fixed syscall "
                              "work, local flush, IPI round trip, refills after a flush). "
                              "syscall and mprotect_base, or ipi_* among themselves, are "
                              "collinear for mprotect cells: fit only one of each group")


# Fitted by pysim.report.calibrate.fit() from kvm-2022-start (least squares on the training cells
# of the cover letter's table, PTI on and no INVPCID in the guest); `pysim reproduce`
# refits every run and a test checks that the refit still lands on these values.
KVM_2022_FIT: Dict[str, float] = {"mprotect_base": 629.1, "flush_base": 972.8,
                                  "ipi_deliver": 3241.2, "walk_ref": 22.1}


def _kvm_2022_calibrated() -> Preset:
    """kvm-2022-start with the fitted values of its free parameters."""
    start = _kvm_2022()
    sources = dict(start.sources)
    for key, value in KVM_2022_FIT.items():
        sources[key] = (f"fitted: pysim.report.calibrate.fit() from {start.cost(key):g} "
                        f"(kvm-2022-start) to {value:g} on the cover letter's training cells")
    fitted = start.replace(name="kvm-2022", sources=sources, **KVM_2022_FIT)
    return dataclasses.replace(fitted, sources={**fitted.sources, **sources},
                               description="KVM guest of the v6 cover letter (2022), "
                                           "calibrated (see pysim reproduce)")


# Fitted by pysim.report.scaling.fit() from milan on the training cells of the INVLPGB
# series' will-it-scale table (`pysim reproduce invlpgb-2025 --refit` recomputes them;
# a test checks that they still give the training cells' residuals).
MILAN_2025_FIT: Dict[str, float] = {"fault_anon": 3977.4, "ipi_handler": 290.4,
                                    "ipi_extra_target": 2547.7, "lru_lock_hold": 998.5,
                                    "smt_speed": 0.719}


def _milan_2025() -> Preset:
    """milan with the costs pysim reproduce invlpgb-2025 fitted."""
    start = _milan()
    sources = {k: (f"fitted: pysim.report.scaling.fit() from {start.cost(k):g} (milan) to "
                   f"{v:g} on invlpgb-2025's training cells (will-it-scale "
                   f"tlb_flush2_threads, tip and INVLPGB)") for k, v in MILAN_2025_FIT.items()
               if k in COST_KEYS}
    fields = "".join(f"; {k} fitted from {getattr(start, k):g} to {v:g}"
                     for k, v in MILAN_2025_FIT.items() if k not in COST_KEYS)
    fitted = start.replace(name="milan-2025", **MILAN_2025_FIT)
    return dataclasses.replace(fitted, sources={**fitted.sources, **sources},
                               free_params=tuple(MILAN_2025_FIT),
                               description="milan calibrated on the INVLPGB series' "
                                           "will-it-scale table (see pysim reproduce "
                                           f"invlpgb-2025){fields}; Machine(cpus=72)")


# Fitted by pysim.report.lazy_cpumask_2024 (least squares, its FIT_REPLICATES runs at
# its default loops) from skylake on the training cell of the kernel test robot's
# tlb_flush2 table: the base kernel's per_thread_ops, idle and irq shares
# (`pysim reproduce lazy-cpumask-2024 --refit` recomputes them; a test checks that
# they still give that cell).  The lazy kernels' cells are held out.
SKYLAKE_LKP_2024_FIT: Dict[str, float] = {"ipi_extra_target": 1616.9, "ipi_handler": 202.1,
                                          "ttwu": 2149.1}


def _skylake_lkp_2024() -> Preset:
    """skylake with the costs pysim reproduce lazy-cpumask-2024 fitted."""
    start = _skylake()
    sources = {k: (f"fitted: pysim.report.lazy_cpumask_2024 from {start.cost(k):g} "
                   f"(skylake) to {v:g} on the kernel test robot's base-kernel cell "
                   f"(will-it-scale tlb_flush2, 104 threads: per_thread_ops, idle, irq)")
               for k, v in SKYLAKE_LKP_2024_FIT.items()}
    fitted = start.replace(name="skylake-lkp-2024", **SKYLAKE_LKP_2024_FIT)
    return dataclasses.replace(fitted, sources={**fitted.sources, **sources},
                               free_params=tuple(SKYLAKE_LKP_2024_FIT),
                               description="skylake calibrated on the kernel test robot's "
                                           "lkp-skl-fpga01 tlb_flush2 base kernel (see "
                                           "pysim reproduce lazy-cpumask-2024); "
                                           "Machine(cpus=104)")


def _arm64(name: str, ghz: float, part: str, cores: int, ghz_source: str) -> Preset:
    """An arm64 server preset: Neoverse N1-class TLBs, broadcast TLBI costs (assumed),
    the Intel-era kernel-path costs reused where arm64 has no figure."""
    table = {k: (v, f"{s} [Intel-era value reused: no {part} figure]")
             for k, (v, s) in _base_table(ghz, guest=False).items()}
    for k in ("invlpg", "invpcid_single", "cr3_flush", "cr3_noflush", "flush_global",
              "invlpg_remote", "pti_cr3_switch", "ipi_send", "ipi_deliver", "ipi_handler",
              "ipi_ack", "ipi_extra_target", "invlpgb_issue", "tlbsync_wait", "rar_send",
              "rar_extra_target", "rar_deliver", "rar_handle"):
        table[k] = (table[k][0], "not used on arm64 (x86 instruction or IPI path): "
                                 "the x86 starting value kept")
    table.update({
        "tlbi": (20, "assumption: a TLBI VAE1IS/ASIDE1IS is posted to the interconnect "
                     "and does not stall the issuer until its DSB, ~20 cycles; "
                     "uncalibrated"),
        "dsb_ish": (300, f"assumption: DSB ISH waits for the DVM round trip on the mesh, "
                         f"~100 ns x {ghz} GHz = 300 cycles before the per-CPU part; "
                         f"uncalibrated"),
        "dvm_per_cpu": (5, f"assumption: each of the {cores} CPUs of the inner-shareable "
                           f"domain acknowledges the DVM operation, ~5 cycles of the DSB's "
                           f"wait per CPU ({cores} x 5 = {cores * 5}); uncalibrated"),
        "flush_base": (300, "assumption: arm64 __flush_tlb_range / flush_tlb_mm without "
                            "flush_tlb_info, cpumask walk or IPIs: barriers, the ceiling "
                            "test and the mmu notifier call, ~300 cycles; uncalibrated"),
        "flush_per_page": (10, "assumption: one step of __flush_tlb_range_op's loop "
                               "(address arithmetic and the TLBI's operand) ~10 cycles"),
    })
    return _build(name, "neoverse-n1", (ghz, ghz_source), table, arch="arm64",
                  features={"pcid": True, "invpcid": False, "invlpgb": False,
                            "tlbi_range": False},
                  asid_bits=16,
                  description=f"{part}, {cores} cores (Machine(cpus={cores})), arm64: "
                              f"broadcast TLBI + DSB ISH, 16-bit ASIDs, no FEAT_TLBIRANGE "
                              f"(Armv8.2); TLBI/DSB costs assumed, kernel costs Intel-era")


def _altra() -> Preset:
    """Ampere Altra-class part: Neoverse N1, 80 cores."""
    return _arm64("altra", 3.0, "Ampere Altra (Neoverse N1)", 80,
                  "Ampere Altra Q80-30 product brief: 80 Neoverse N1 cores at up to 3.0 GHz "
                  "(S)")


def _kunpeng920() -> Preset:
    """Kunpeng 920-class part: 128 TaiShan v110 cores (2 sockets of 64)."""
    p = _arm64("kunpeng920", 2.6, "HiSilicon Kunpeng 920 (TaiShan v110)", 128,
               "Kunpeng 920 7260 data: 64 cores per socket at 2.6 GHz, 2 sockets (S)")
    return dataclasses.replace(p, description=p.description + "; Neoverse N1's TLB "
                               "geometry reused (no public TaiShan v110 TLB figures found)")


def _snapdragon888() -> Preset:
    """Snapdragon 888-class phone SoC, 8 cores, modelled with one core type."""
    p = _arm64("snapdragon888", 2.42, "Qualcomm Snapdragon 888", 8,
               "Snapdragon 888: 1 Cortex-X1 at 2.84 GHz, 3 Cortex-A78 at 2.42 GHz, 4 "
               "Cortex-A55 at 1.80 GHz (S); assumption: one core type, the A78's 2.42 GHz")
    return dataclasses.replace(p, description=p.description + "; assumption: the 1+3+4 "
                               "X1/A78/A55 cores as 8 of one type, Neoverse N1's TLB "
                               "geometry (an A76 derivative) for the A78; kernel and "
                               "TLBI/DSB costs as the server presets' assumptions")


PRESETS: Dict[str, Preset] = {p.name: p for p in (
    _skylake(), _zen3(), dataclasses.replace(_kvm_2022(), name="kvm-2022-start"),
    _kvm_2022_calibrated())}
PRESETS.update({p.name: p for p in (_milan(), _genoa())})
PRESETS.update({p.name: p for p in (_altra(), _kunpeng920(), _snapdragon888())})


# ---------------------------------------------------------------- TOML files
# (the reader; the writer is pysim.config.toml_preset.preset_to_toml)
_TOP = {"name": str, "geometry": str, "ghz": (int, float), "description": str,
        "arch": str, "free_params": list, "invlpgb_count_max": int,
        "kvm_pv_preempt": (int, float), "asid_bits": int, "smt_speed": (int, float),
        "cores_per_llc": int, "features": dict,
        "hw": dict, "kernel": dict, "sources": dict}
_REQUIRED = ("name", "geometry", "ghz", "hw", "kernel", "sources")


def load_preset_file(path: str) -> Preset:
    """The Preset a TOML file describes; ConfigError naming the file and field."""
    return preset_from_dict(read_toml(path, "preset", "preset"),
                            where=f"preset file {path!r}")


def preset_from_dict(data: Dict[str, Any], where: str = "preset") -> Preset:
    """A Preset from a parsed TOML table, checked field by field before Preset's own
    validation (whose errors are prefixed with `where`)."""
    for key in data:
        if key not in _TOP:
            raise ConfigError(f"{where}: field {key!r} unknown; allowed: "
                              f"{', '.join(_TOP)}", field=key, allowed=tuple(_TOP))
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{where}: field {key!r} missing", field=key)
    for key, typ in _TOP.items():
        if key in data and (not isinstance(data[key], typ) or isinstance(data[key], bool)
                            and typ is not dict):
            want = typ.__name__ if isinstance(typ, type) else "number"
            raise ConfigError(f"{where}: field {key!r} must be a {want}, got "
                              f"{data[key]!r}", field=key)
    for table, keys in (("hw", HW_KEYS), ("kernel", KERNEL_KEYS)):
        for key, value in data[table].items():
            if key not in keys:
                other = "kernel" if table == "hw" else "hw"
                hint = f" (it belongs in [{other}])" if key in COST_KEYS else ""
                raise ConfigError(f"{where}: [{table}] {key!r} unknown{hint}; allowed: "
                                  f"{', '.join(keys)}", field=key, allowed=keys)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: [{table}] {key} must be a number of cycles, "
                                  f"got {value!r}", field=key)
        if table == "kernel" and data.get("arch", "x86") == "x86":
            # files written before the arm64 keys existed: those costs are 0 on x86
            for key in ARM64_KEYS:
                if key not in data[table]:
                    data[table][key] = 0
                    data.setdefault("sources", {}).setdefault(
                        key, "not used on x86: an arm64 broadcast-TLBI cost")
        if table == "kernel" and "cacheline_remote" not in data[table] \
                and "cacheline_transfer" in data[table]:
            # files written before cacheline_remote existed: one last-level cache
            data[table]["cacheline_remote"] = data[table]["cacheline_transfer"]
            data.setdefault("sources", {}).setdefault(
                "cacheline_remote", "as cacheline_transfer (the file predates it)")
        if table == "kernel" and "ttwu" not in data[table] and "ipi_send" in data[table] \
                and _is_number(data.get("ghz")):
            # files written before ttwu existed: derived as _base_table derives it
            data[table]["ttwu"] = data[table]["ipi_send"] + round(300 * data["ghz"])
            data.setdefault("sources", {}).setdefault(
                "ttwu", "derived (the file predates ttwu): ipi_send + ~300 ns")
        missing = [k for k in keys if k not in data[table]]
        if missing:
            raise ConfigError(f"{where}: [{table}] lacks {missing[0]!r}", field=missing[0])
    fields = dict(data)
    fields["free_params"] = tuple(data.get("free_params", ()))
    fields["features"] = {**FEATURES, **data.get("features", {})}
    try:
        return Preset(**fields)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}", field=getattr(e, "field", None)) from None


def _intel_rar() -> Preset:
    """A future Intel Xeon server core with RAR (the RFC names no part; RAR is described
    in Intel's white paper 341431): Skylake's geometry and Intel-era costs, the rar
    feature; the RAR costs are assumptions."""
    table = {k: (v, f"{s} [Skylake-era value reused: no figure for a RAR part]")
             for k, (v, s) in _base_table(3.0, guest=False).items()}
    return _build("intel-rar", "skylake",
                  (3.0, "assumption: a future Intel server core at 3.0 GHz; only converts "
                        "the ns figures into cycles"),
                  table, features={"pcid": True, "invpcid": True, "invlpgb": False,
                                   "rar": True},
                  description="future Intel Xeon server with Remote Action Request "
                              "(RAR), ~3 GHz; Skylake TLB geometry and costs, RAR costs "
                              "assumed (use profile rar-rfc)")


PRESETS["intel-rar"] = _intel_rar()
PRESETS["milan-2025"] = _milan_2025()
PRESETS["skylake-lkp-2024"] = _skylake_lkp_2024()


def _this_host() -> Preset:
    """The machine pysim is developed and tested on (a KVM guest), fitted by `pysim
    calibrate data/this-host.csv -o data/this-host.toml` to the `pysim hostbench` CSV
    committed beside it; remake it on another machine with the same two commands."""
    return load_preset_file(os.path.join(os.path.dirname(__file__), "data", "this-host.toml"))


PRESETS["this-host"] = _this_host()


def get_preset(name: Any = "skylake", **overrides: Any) -> Preset:
    """A built-in preset by name, a TOML file (a path ending in .toml), or a given
    Preset, with fields or costs overridden."""
    if isinstance(name, Preset):
        base = name
    elif isinstance(name, str) and name in PRESETS:
        base = PRESETS[name]
    elif isinstance(name, str) and name.lower().endswith(".toml"):
        base = load_preset_file(name)
    else:
        raise ConfigError(f"preset {name!r} unknown; allowed: {', '.join(PRESETS)}, or a "
                          f"file NAME.toml",
                          field="preset", allowed=tuple(PRESETS))
    return base.replace(**overrides) if overrides else base
