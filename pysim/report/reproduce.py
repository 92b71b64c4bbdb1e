"""`pysim reproduce`: a registry of published results, each reproduced from first
principles beside its published numbers.

    pysim reproduce --list
    pysim reproduce                      # mprotect-2022, the cover letter's table
    pysim reproduce invlpgb-2025 --json

An entry names its source and provides run(iterations, refit) -> a JSON-able dict
(at least "name" and "cells"), format_text(dict) -> the report a person reads, and
plot(dict, path).  Entries whose model is expensive to fit keep their fitted values
beside their code and refit only when asked (refit=True, `--refit`); a test refits
each one and checks that it lands on the stored values.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from ..errors import ConfigError

DEFAULT = "mprotect-2022"


@dataclass(frozen=True)
class Entry:
    """One published result: what it is, where it was published, its module."""

    name: str
    title: str
    source: str
    module: str                  # pysim.report.<module>: run, format_text, plot
    default_iterations: int

    def _mod(self):
        return importlib.import_module(f"{__package__}.{self.module}")

    def run(self, iterations: Optional[int] = None, refit: bool = False) -> Dict[str, Any]:
        return self._mod().run(iterations or self.default_iterations, refit=refit)

    def format_text(self, d: Dict[str, Any]) -> str:
        return self._mod().format_text(d)

    def plot(self, d: Dict[str, Any], path: str) -> None:
        self._mod().plot(d, path)


REGISTRY: Dict[str, Entry] = {e.name: e for e in (
    Entry("mprotect-2022",
          "mm/mprotect: avoid unnecessary TLB flushes: cycles per mprotect, 1 and 2 threads",
          "Nadav Amit, v6 cover letter (2022), KVM guest", "mprotect_2022", 20),
    Entry("invlpgb-2025",
          "will-it-scale tlb_flush2_threads on a 72-CPU Milan, tip vs INVLPGB, loops/s",
          "Rik van Riel, x86 INVLPGB series, 20250226030129.530345-11-riel@surriel.com",
          "invlpgb_2025", 1000),
    Entry("lazy-cpumask-2024",
          "will-it-scale tlb_flush2 per_thread_ops: lazy mm_cpumask regression and trim fix",
          "kernel test robot 202411282207.6bd28eae; commits 209954cbc7d0, 6db2526c1d69",
          "lazy_cpumask_2024", 1500),
    Entry("arm64-pte-needs-flush-2025",
          "arm64 pte_needs_flush(): PROT_NONE -> RW mprotect, before/after; the cover "
          "letter's loop on arm64",
          "Dev Jain, c320dbb7c80d (arm64/mm: Elide TLB flush in certain pte protection "
          "transitions), 2025", "arm64_pte_needs_flush_2025", 20),
    Entry("arm64-batched-flush-2023",
          "arm64 batched unmap flush for reclaim: ptep_clear_flush's share and the "
          "speed-up on 4, 8 and 128 CPUs",
          "Barry Song, Yicong Yang, 43b3dfdd0455 (arm64: support batched/deferred tlb "
          "shootdown during page reclamation/migration), 6.6", "arm64_batched_flush_2023", 3),
)}


def get_entry(name: Any) -> Entry:
    """The registered result called name, or a ConfigError listing them."""
    if name not in REGISTRY:
        raise ConfigError(f"published result {name!r} unknown; known: "
                          f"{', '.join(REGISTRY)} (pysim reproduce --list)",
                          field="name", allowed=tuple(REGISTRY))
    return REGISTRY[name]


def listing() -> str:
    """One line per registered result: name, what, where."""
    width = max(len(n) for n in REGISTRY)
    return "\n".join(f"{e.name:{width}}  {e.title}\n{'':{width}}  source: {e.source}"
                     for e in REGISTRY.values())


def reproduce(name: str = DEFAULT, as_json: bool = False, plot_path: Optional[str] = None,
              iterations: Optional[int] = None, refit: bool = False) -> str:
    """Run one registered result; its report as text (or JSON), maybe a plot."""
    entry = get_entry(name)
    d = entry.run(iterations, refit=refit)
    if plot_path:
        entry.plot(d, plot_path)
    return json.dumps(d, indent=1, default=str) if as_json else entry.format_text(d)
