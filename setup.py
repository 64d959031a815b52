"""Native extensions only; everything else is in pyproject.toml.

The Cython accelerators in ``mncore/_fast`` are optional: without Cython or a C compiler the
build still succeeds and the pure-Python implementations are used.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build extensions when possible; never fail the install because of them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "pure build"
            sys.stderr.write(f"mncore: native extensions not built ({exc}); using the pure-Python build\n")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"mncore: {ext.name} not built ({exc}); using the pure-Python build\n")


def extensions() -> list:
    if os.environ.get("MNCORE_NO_EXTENSIONS", "").lower() in ("1", "true", "yes"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    from setuptools import Extension

    modules = []
    for name in ("_ring", "_slots"):
        source = os.path.join("mncore", "_fast", f"{name}.pyx")
        if os.path.exists(source):
            modules.append(Extension(f"mncore._fast.{name}", [source], extra_compile_args=["-O3"]))
    if not modules:
        return []
    return cythonize(modules, language_level=3, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
