"""The public face: Machine, Process, Thread, and the CPUs the kernel paths run on."""
from ..results import BREAKDOWN, KERNEL_COUNTERS, Fault, OpResult
from .cpu import CPU
from ..mm.frames import ZERO_PFN, Frames
from .machine import Machine, Op, Process, Thread
