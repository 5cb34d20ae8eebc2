"""Build relay, compiling every Cython kernel under relay/_fast/.

A failed compile fails the install: there is no silent pure-Python fallback.
(``RELAY_NO_EXTENSIONS=1`` at *run* time selects the pure-Python twins for debugging.)
"""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent

extensions = [
    Extension(
        f"relay._fast.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted((HERE / "relay" / "_fast").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
    ),
)
