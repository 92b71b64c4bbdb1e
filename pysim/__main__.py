"""`python -m pysim ...` is the `pysim` command."""
import sys

from .cli import main

sys.exit(main())
