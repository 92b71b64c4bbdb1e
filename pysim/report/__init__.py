"""Reports: `pysim reproduce` (the cover letter's table from first principles), the
calibration behind the kvm-2022 preset, and the plots of sweep results."""
