"""Kernel behaviour sets ("profiles"): which code paths the simulated kernel runs.

A profile is data: switches for the three patches of "mm/mprotect: avoid unnecessary
TLB flushes" (Nadav Amit, v6, merged in 5.19) and for the later kernel changes that
alter the same paths, plus the kernel's flush knobs (the ceiling, lazy TLB, PTI as a
kernel option). CPU features (PCID, INVPCID) are hardware and live in the preset. The
mm and flush code read these fields; nothing here does any work. Built-ins are in PROFILES; get_profile() returns
one, optionally with fields overridden, and validates the result.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple, Union

from ..errors import ConfigError

__all__ = ["Profile", "PROFILES", "ALIASES", "get_profile", "CHANGE_WRITABLE_MODES",
           "PROFILE_FIELDS"]

# mprotect's RW handling for private anonymous pages:
#   "none"      <= 5.19: RW is only set by the write fault (do_wp_page reuse)
#   "dirty"     6.0 (64fe24a3e05e, MM_CP_TRY_CHANGE_WRITABLE): RW set on dirty exclusive anon PTEs
#   "exclusive" 6.2 ("allow clean exclusive anon pages to be writable"): dirty not required
CHANGE_WRITABLE_MODES: Tuple[str, ...] = ("none", "dirty", "exclusive")
# 12-bit PCIDs with PTI using bit 11 for the user copy leave 11 bits for kernel ASIDs
# (arch/x86/mm/tlb.c: CR3_AVAIL_PCID_BITS), and PCID 0 is not used for dynamic ASIDs.
_MAX_DYN_ASIDS = (1 << 11) - 1


@dataclass(frozen=True)
class Profile:
    """One simulated kernel: the mprotect series' patches, later changes, x86 TLB knobs."""

    name: str
    # Patch 1, 4a18419f71cd "mm/mprotect: use mmu_gather": one gather per mprotect
    # instead of a flush_tlb_range per VMA.
    use_mmu_gather: bool = False
    # Patch 2, c9fe66560bf2 "do not flush when not required architecturally":
    # pte_needs_flush()/huge_pmd_needs_flush() decide per entry. Needs patch 1.
    skip_unneeded_flush: bool = False
    # Patch 3, 4f83145721f3 "avoid unnecessary flush on change_huge_pmd()":
    # pmdp_invalidate_ad() without the immediate flush. Needs patch 1.
    huge_pmd_ad_no_flush: bool = False
    # mprotect sets RW itself on some anon PTEs (see CHANGE_WRITABLE_MODES).
    change_writable: str = "none"
    # MMU_GATHER_MERGE_VMAS (x86 selects it): one flush per gather across VMAs; False
    # flushes at every tlb_end_vma as arm64/generic do.
    merge_vmas_in_gather: bool = True
    # arch/x86/mm/tlb.c: more than this many stride steps -> full flush.
    tlb_single_page_flush_ceiling: int = 33
    pti: bool = False                     # page-table isolation, a kernel option
    nr_dyn_asids: int = 6                 # TLB_NR_DYN_ASIDS
    lazy_tlb: bool = True                 # kernel threads borrow the mm (enter_lazy_tlb)
    # 3ef938c35035 (2025): x86 flush_tlb_range() passes freed_tables=true, so those
    # flushes also IPI lazy CPUs.
    flush_tlb_range_freed_tables: bool = False
    # aa44284960d5 (6.0): flush_tlb_func returns early if new_tlb_gen <= local gen.
    flush_func_early_exit: bool = False
    # 209954cbc7d0 "x86/mm/tlb: Update mm_cpumask lazily" (6.14): a CPU's bit stays in
    # mm_cpumask when it switches away; the first flush IPI reaching it while it runs
    # another mm (or none) clears it.
    lazy_cpumask: bool = False
    # 6db2526c1d69 "x86/mm/tlb: Only trim the mm_cpumask once a second" (6.14):
    # should_flush_tlb() skips CPUs of the mask not running the mm unless the request
    # trims, which should_trim_cpumask() allows once per hz jiffies per mm. Needs
    # lazy_cpumask.
    trim_cpumask: bool = False
    # CONFIG_HZ: jiffies per second (100, 250, 300 or 1000); the trim interval is HZ.
    hz: int = 1000
    # Rik van Riel's INVLPGB series (6.15, CONFIG_BROADCAST_TLB_FLUSH; final enabling
    # patch 20250226030129.530345-11-riel@surriel.com): global ASIDs for mms active on
    # 4+ CPUs and broadcast_tlb_flush() with INVLPGB/TLBSYNC, used only when the preset's
    # CPU has the invlpgb feature (else the kernel behaves as without it). Built on
    # the 6.14 mask rules: needs lazy_cpumask and trim_cpumask.
    broadcast_tlb_flush: bool = False
    # d7f861b9c43a "mm/mmu_gather: add __tlb_remove_folio_pages()" (6.9): a page batch
    # counts as full at nr >= max - 1, one entry short, so a (page, nr_pages) pair always
    # fits: 1 from 6.9 on, 0 before (full at nr == max).  Read by tlb_gather_mmu
    # (pysim.mm.mmu_gather.gather_batch_reserve); the limits are in mmucore/gather.pxd.
    mmu_gather_batch_reserve: int = 0
    # Intel RAR, Rik van Riel's RFC (v1 20250506003811.92405-1 .. v4
    # 20250619200442.1694583-1, not merged): global ASIDs as with INVLPGB, flushed by
    # Remote Action Requests to mm_cpumask (mmucore.tlbstate's RAR block), used only
    # when the preset's CPU has the rar feature. Built on the 6.15 series: needs
    # broadcast_tlb_flush.
    rar_tlb_flush: bool = False
    # arm64 pte_needs_flush() (Dev Jain, c320dbb7c80d, "arm64/mm: Elide TLB flush in
    # certain pte protection transitions", based on 6.18-rc1): no flush for an invalid
    # old entry or a software-bit-only change.  Read only by arch arm64.
    arm64_pte_needs_flush: bool = False
    # arm64's batched unmap flush for reclaim and migration (Barry Song, Yicong Yang,
    # 43b3dfdd0455, 6.6: arm64 selects ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH): try_to_unmap
    # issues each page's TLBI at arch_tlbbatch_add_pending() and the one DSB ISH comes
    # at arch_tlbbatch_flush().  Before 6.6 every page went by ptep_clear_flush()
    # (TLBI + DSB).  Read only by arch arm64; the 5.x profiles leave it off.
    arm64_batched_unmap_flush: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> "Profile":
        """A copy with fields changed and validated; renamed "<name>[k=v,...]" unless a
        name is given, so results say what was customised."""
        _check_field_names(changes)
        if "name" not in changes and changes:
            tweaks = ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
            changes["name"] = f"{self.name}[{tweaks}]"
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        """Fields as a plain dict, for result rows and sweeps."""
        return dataclasses.asdict(self)


_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Profile))
PROFILE_FIELDS: Tuple[str, ...] = tuple(f for f in _FIELDS if f != "name")
_BOOL_FIELDS = ("use_mmu_gather", "skip_unneeded_flush", "huge_pmd_ad_no_flush",
                "merge_vmas_in_gather", "pti", "lazy_tlb",
                "flush_tlb_range_freed_tables", "flush_func_early_exit",
                "lazy_cpumask", "trim_cpumask", "broadcast_tlb_flush",
                "rar_tlb_flush", "arm64_batched_unmap_flush")
HZ_VALUES: Tuple[int, ...] = (100, 250, 300, 1000)     # the CONFIG_HZ choices


def _check_field_names(changes: Dict[str, Any]) -> None:
    """ConfigError if changes names a field Profile does not have."""
    unknown = sorted(set(changes) - set(_FIELDS))
    hardware = [k for k in unknown if k in ("pcid", "invpcid", "invlpgb", "rar")]
    if hardware:
        raise ConfigError(f"{hardware[0]!r} is a CPU feature, not kernel behaviour: set it "
                          f"on the preset (get_preset(name, {hardware[0]}=False)) or pass "
                          f"it to Machine(...)", field=hardware[0])
    if unknown:
        raise ConfigError(f"profile field {unknown[0]!r} unknown; allowed fields: "
                          f"{', '.join(_FIELDS)}", field=unknown[0], allowed=_FIELDS)


def _validate(p: Profile) -> None:
    """Check types, ranges and that the patch combination existed in some kernel."""
    if not isinstance(p.name, str) or not p.name:
        raise ConfigError(f"profile name must be a non-empty string, got {p.name!r}",
                          field="name")
    for field in _BOOL_FIELDS:
        value = getattr(p, field)
        if not isinstance(value, bool):
            raise ConfigError(f"profile {p.name!r}: {field} must be True or False, "
                              f"got {value!r}", field=field, allowed=(True, False))
    if p.change_writable not in CHANGE_WRITABLE_MODES:
        raise ConfigError(f"profile {p.name!r}: change_writable={p.change_writable!r} "
                          f"unknown; allowed: {', '.join(CHANGE_WRITABLE_MODES)}",
                          field="change_writable", allowed=CHANGE_WRITABLE_MODES)
    _check_int(p, "tlb_single_page_flush_ceiling", 0, 1 << 63)
    _check_int(p, "nr_dyn_asids", 1, _MAX_DYN_ASIDS)
    _check_int(p, "mmu_gather_batch_reserve", 0, 1)
    if isinstance(p.hz, bool) or p.hz not in HZ_VALUES:
        raise ConfigError(f"profile {p.name!r}: hz must be one of {HZ_VALUES} (CONFIG_HZ), "
                          f"got {p.hz!r}", field="hz", allowed=HZ_VALUES)
    _check_combination(p)


def _check_int(p: Profile, field: str, lo: int, hi: int) -> None:
    """ConfigError unless the field is an int in [lo, hi]."""
    value = getattr(p, field)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"profile {p.name!r}: {field} must be an integer in [{lo}, {hi}], "
                          f"got {value!r}", field=field)


def _check_combination(p: Profile) -> None:
    """Reject switch combinations no kernel had: patches 2 and 3 record their flushes in
    patch 1's mmu_gather, and the 6.0+ RW change was written on top of all three."""
    if p.skip_unneeded_flush and not p.use_mmu_gather:
        raise ConfigError(f"profile {p.name!r}: skip_unneeded_flush=True needs "
                          f"use_mmu_gather=True (patch 2 builds on patch 1)",
                          field="skip_unneeded_flush")
    if p.huge_pmd_ad_no_flush and not p.use_mmu_gather:
        raise ConfigError(f"profile {p.name!r}: huge_pmd_ad_no_flush=True needs "
                          f"use_mmu_gather=True (patch 3 defers the flush to patch 1's "
                          f"gather)", field="huge_pmd_ad_no_flush")
    if p.change_writable != "none" and not (p.use_mmu_gather and p.skip_unneeded_flush
                                            and p.huge_pmd_ad_no_flush):
        raise ConfigError(f"profile {p.name!r}: change_writable={p.change_writable!r} "
                          f"(6.0+) needs use_mmu_gather, skip_unneeded_flush and "
                          f"huge_pmd_ad_no_flush all True", field="change_writable",
                          allowed=("none",))
    if p.trim_cpumask and not p.lazy_cpumask:
        raise ConfigError(f"profile {p.name!r}: trim_cpumask=True needs lazy_cpumask=True "
                          f"(6db2526c1d69 trims the mask 209954cbc7d0 leaves stale)",
                          field="trim_cpumask")
    if p.broadcast_tlb_flush and not (p.lazy_cpumask and p.trim_cpumask):
        raise ConfigError(f"profile {p.name!r}: broadcast_tlb_flush=True needs "
                          f"lazy_cpumask and trim_cpumask True (the 6.15 INVLPGB series "
                          f"is built on the 6.14 mask rules)", field="broadcast_tlb_flush")
    if p.rar_tlb_flush and not p.broadcast_tlb_flush:
        raise ConfigError(f"profile {p.name!r}: rar_tlb_flush=True needs "
                          f"broadcast_tlb_flush=True (the RAR RFC reuses the 6.15 global "
                          f"ASIDs)", field="rar_tlb_flush")


_MMOTS = Profile(name="mmots")
_PATCHED = Profile(name="patched", use_mmu_gather=True, skip_unneeded_flush=True,
                   huge_pmd_ad_no_flush=True)
_V60 = dataclasses.replace(_PATCHED, name="v6.0", change_writable="dirty",
                           flush_func_early_exit=True)
_V62 = dataclasses.replace(_V60, name="v6.2", change_writable="exclusive")
_V614 = dataclasses.replace(_V62, name="v6.14", flush_tlb_range_freed_tables=True,
                            lazy_cpumask=True, trim_cpumask=True,
                            mmu_gather_batch_reserve=1, arm64_batched_unmap_flush=True)
_V615 = dataclasses.replace(_V614, name="v6.15", broadcast_tlb_flush=True)

PROFILES: Dict[str, Profile] = {
    # v5.17-rc6-mmots-2022-03-06-20-38, the cover letter's baseline: none of the patches.
    "mmots": _MMOTS,
    # 5.19: all three patches.
    "patched": _PATCHED,
    # Patch 1 alone: gather and merge flushes, but flush every present PTE as before.
    "mmu_gather": Profile(name="mmu_gather", use_mmu_gather=True),
    # Patch 2 needs patch 1, so this is patches 1+2.
    "skip_flush": Profile(name="skip_flush", use_mmu_gather=True, skip_unneeded_flush=True),
    # Patch 3 needs patch 1, so this is patches 1+3.
    "huge_pmd_ad": Profile(name="huge_pmd_ad", use_mmu_gather=True,
                           huge_pmd_ad_no_flush=True),
    # 6.0: RW set by mprotect on dirty exclusive anon pages; flush_tlb_func early exit.
    "v6.0": _V60,
    # 6.2: RW set on clean exclusive anon pages too.
    "v6.2": _V62,
    # 6.14: lazy mm_cpumask, trimmed at most once a second; flush_tlb_range() passes
    # freed_tables=true since 3ef938c35035 (merged for 6.13); page batches full one
    # entry early since 6.9 (mmu_gather_batch_reserve).
    "v6.14": _V614,
    # 6.15: INVLPGB broadcast flushes with global ASIDs (on a preset with invlpgb).
    "v6.15": _V615,
    # 6.18: as 6.15 for these paths.  Between 6.15 and 6.18 the two missed-flush fixes
    # fea4e317f9e7 (should_flush_tlb() flushes a CPU seen in LOADED_MM_SWITCHING) and
    # 83b0177a6c48 (smp_mb() between the mm_cpumask/loaded_mm stores and the tlb_gen
    # read in switch_mm_irqs_off) close races between a switch and a flush in flight;
    # switches and flushes are atomic here, so neither changes what the model does.
    "v6.18": dataclasses.replace(_V615, name="v6.18"),
    # The Intel RAR RFC (v4, June 2025) on top of 6.15: on a preset with the rar
    # feature, mms with a global ASID flush by RAR to mm_cpumask.
    "rar-rfc": dataclasses.replace(_V615, name="rar-rfc", rar_tlb_flush=True),
    "v6.19": dataclasses.replace(_V615, name="v6.19", arm64_pte_needs_flush=True),
}

# Other names for built-ins, by kernel release.
ALIASES: Dict[str, str] = {"v5.17": "mmots", "v5.19": "patched"}


def get_profile(name_or_profile: Union[str, Profile] = "patched",
                **overrides: Any) -> Profile:
    """A built-in profile by name (or a given Profile), with fields overridden."""
    if isinstance(name_or_profile, Profile):
        base = name_or_profile
    elif isinstance(name_or_profile, str):
        key = ALIASES.get(name_or_profile, name_or_profile)
        if key not in PROFILES:
            allowed = tuple(PROFILES) + tuple(ALIASES)
            raise ConfigError(f"profile {name_or_profile!r} unknown; allowed: "
                              f"{', '.join(allowed)}", field="profile", allowed=allowed)
        base = PROFILES[key]
    else:
        raise ConfigError(f"profile must be a name or a Profile, got "
                          f"{type(name_or_profile).__name__}", field="profile",
                          allowed=tuple(PROFILES))
    return base.replace(**overrides) if overrides else base
