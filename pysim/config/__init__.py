"""Configuration: kernel profiles (behaviour), hardware presets (features and costs,
each with its source) and the frozen KernelConfig the kernel paths are handed."""
from .kernel import KernelConfig, KernelCosts, resolve, split_machine_overrides
from .presets import (ARCHES, COST_KEYS, FEATURES, HW_KEYS, KERNEL_KEYS, PRESETS, Preset,
                      get_preset)
from .profiles import PROFILE_FIELDS, PROFILES, Profile, get_profile
