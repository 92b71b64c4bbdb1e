"""Build the mmucore Cython extensions (one extension per concept module)."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["pte", "pte_arm64", "gather", "cost", "pagetable", "tlb", "stats", "calendar",
           "tlbstate", "fastfault", "straceline", "vma", "mmu_gather"]

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "embedsignature": True,
}

extensions = [
    Extension(
        f"mmucore.{name}",
        [f"mmucore/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for name in MODULES
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES))
