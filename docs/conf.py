"""Sphinx configuration of pysim's documentation.

Build with warnings as errors (what CI does, through tests/test_docs.py):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages of presets, profiles and the command line are generated from pysim itself
at build time (docs/_ext/pysim_catalog.py), so they cannot drift from the code.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# document the checkout these docs belong to, and find the local extension
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(HERE, "_ext"))

import pysim  # noqa: E402

project = "pysim"
author = "the pysim authors"
copyright = "2026, the pysim authors"
release = pysim.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "pysim_catalog",
]
exclude_patterns = ["_build"]
templates_path = []
html_static_path = []
html_theme = "alabaster"
html_title = f"pysim {release}"

# autodoc: members in source order, signatures with their annotations as written
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "undoc-members": False,
                           "show-inheritance": True}
# docstrings here are prose with code in them, not reST: see pysim_catalog.plain_docstring
pysim_plain_docstrings = True
# quotes, dashes and dots stay as typed: the text is full of code and kernel names
smartquotes = False
