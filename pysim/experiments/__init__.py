"""Experiments: the registry (schema from signatures) and the built-in experiments.
See pysim.experiments.registry for how to register your own."""
from .registry import (COST_PREFIX, ENTRY_POINT_GROUP, EXPERIMENTS, WALL_PREFIX, Experiment,
                       experiment, figures_of, get_experiment, import_experiments,
                       load_entry_points, scalar)
from .builtin import mprotect_loop, mprotect_range, split_overrides
