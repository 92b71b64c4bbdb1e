"""Measuring the machine pysim runs on: hostbench (the C microbenchmark and its driver),
the model's counterpart of each hostbench scenario, and the host calibration."""
