"""Build hook for the optional Cython extensions of ``fastpath``.

The extensions are an accelerator, never a requirement: when Cython or a C
compiler is missing, or ``ONEDOOR_NO_EXTENSIONS=1`` is set, the package installs
without them and ``fastpath`` falls back to its pure-Python twin.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

EXTENSIONS = ["fastpath/_core_c.pyx", "fastpath/_sim_c.pyx"]


class OptionalBuildExt(build_ext):
    """Build the extensions, but let a failed build fall back to pure Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            print(f"onedoor: building fastpath extensions failed ({exc}); using pure Python",
                  file=sys.stderr)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"onedoor: skipping {ext.name} ({exc})", file=sys.stderr)


def extensions():  # type: ignore[no-untyped-def]
    if os.environ.get("ONEDOOR_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    sources = [p for p in EXTENSIONS if os.path.exists(p)]
    # -ffp-contract=off: no fused multiply-add, so floating point matches the
    # pure-Python twin bit for bit on aarch64 (Raspberry Pi) too.
    if not sources:
        return []
    try:
        return cythonize(
            sources,
            compiler_directives={"language_level": "3", "boundscheck": False,
                                 "wraparound": False, "cdivision": True},
            quiet=True,
        )
    except Exception as exc:
        print(f"onedoor: cythonize failed ({exc}); using pure Python", file=sys.stderr)
        return []


ext_modules = extensions()
for ext in ext_modules:
    ext.extra_compile_args = ["-O3", "-ffp-contract=off"]
    # libm directly: without it exp binds to glibc's old errno-setting wrapper.
    ext.libraries = ["m"]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
