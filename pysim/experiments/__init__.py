"""Experiments: the registry (schema from signatures) and the built-in experiments.
See pysim.experiments.registry for how to register your own."""
from .registry import (COST_PREFIX, EXPERIMENTS, WALL_PREFIX, Experiment, experiment,
                       figures_of, get_experiment, scalar)
from .builtin import mprotect_loop, mprotect_range, split_overrides
