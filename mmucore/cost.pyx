"""Counter names and the hardware cost model's Python face."""

COUNTER_NAMES = (
    "accesses", "reads", "writes", "fetches",
    "l1_hits", "l1_misses", "stlb_hits", "stlb_misses",
    "walks", "walk_refs", "psc_pml4_hits", "psc_pdpt_hits", "psc_pde_hits", "psc_misses",
    "dirty_walks", "l1_evictions", "stlb_evictions", "psc_evictions",
    "invlpg", "invpcid_single", "flush_pcid", "flush_all", "cr3_noflush",
    "faults", "fault_not_present", "fault_write", "fault_nx", "fault_user", "fault_from_tlb",
)
assert len(COUNTER_NAMES) == N_COUNTERS
CYCLE_NAMES = ("tlb_hit", "walk", "invalidate", "fault_hw")
assert len(CYCLE_NAMES) == N_CYCLE_KINDS

COST_FIELDS = ("l1_hit", "stlb_hit", "walk_base", "walk_ref", "invlpg", "invpcid_single",
               "cr3_flush", "cr3_noflush", "flush_global", "fault_hw",
               "invlpg_remote")


cdef class CostModel:
    """Cycle costs of hardware events; every field is named and set from a preset.

    All costs default to 0, so a TLB without a cost model counts events but no cycles.
    """

    def __init__(self, **costs):
        for name in COST_FIELDS:
            setattr(self, name, 0.0)
        unknown = sorted(set(costs) - set(COST_FIELDS))
        if unknown:
            raise ValueError(f"unknown hardware cost field(s) {unknown}; "
                             f"allowed: {', '.join(COST_FIELDS)}")
        for name, value in costs.items():
            value = float(value)
            if not value >= 0:
                raise ValueError(f"hardware cost {name}={value} must be >= 0")
            setattr(self, name, value)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in COST_FIELDS}

    def __repr__(self):
        return "CostModel(" + ", ".join(f"{k}={v:g}" for k, v in self.as_dict().items()) + ")"

    def __reduce__(self):
        return (_rebuild_cost, (self.as_dict(),))

    @property
    def l1_hit(self): return self.c.l1_hit
    @l1_hit.setter
    def l1_hit(self, double v): self.c.l1_hit = v
    @property
    def stlb_hit(self): return self.c.stlb_hit
    @stlb_hit.setter
    def stlb_hit(self, double v): self.c.stlb_hit = v
    @property
    def walk_base(self): return self.c.walk_base
    @walk_base.setter
    def walk_base(self, double v): self.c.walk_base = v
    @property
    def walk_ref(self): return self.c.walk_ref
    @walk_ref.setter
    def walk_ref(self, double v): self.c.walk_ref = v
    @property
    def invlpg(self): return self.c.invlpg
    @invlpg.setter
    def invlpg(self, double v): self.c.invlpg = v
    @property
    def invpcid_single(self): return self.c.invpcid_single
    @invpcid_single.setter
    def invpcid_single(self, double v): self.c.invpcid_single = v
    @property
    def cr3_flush(self): return self.c.cr3_flush
    @cr3_flush.setter
    def cr3_flush(self, double v): self.c.cr3_flush = v
    @property
    def cr3_noflush(self): return self.c.cr3_noflush
    @cr3_noflush.setter
    def cr3_noflush(self, double v): self.c.cr3_noflush = v
    @property
    def flush_global(self): return self.c.flush_global
    @flush_global.setter
    def flush_global(self, double v): self.c.flush_global = v
    @property
    def fault_hw(self): return self.c.fault_hw
    @fault_hw.setter
    def fault_hw(self, double v): self.c.fault_hw = v
    @property
    def invlpg_remote(self): return self.c.invlpg_remote
    @invlpg_remote.setter
    def invlpg_remote(self, double v): self.c.invlpg_remote = v


def _rebuild_cost(d):
    """Unpickle a CostModel with its fields as stored (attribute writes were never checked)."""
    c = CostModel()
    for name, value in d.items():
        setattr(c, name, value)
    return c
