"""Workloads: functions that drive a Machine and report figures."""
from .seed import STEPS, LoopResult, mprotect_loop

__all__ = ["mprotect_loop", "LoopResult", "STEPS"]
