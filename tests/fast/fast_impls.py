"""Which ``_fast`` implementations the tests run against (imported by conftest and tests)."""

from __future__ import annotations

from typing import Any

import pytest

from mncore.config import extensions_disabled

IMPLS = ["python", "cython"]


def _cython_skip_reason() -> str | None:
    if extensions_disabled():
        return "MNCORE_NO_EXTENSIONS is set: the Cython structures are disabled"
    try:
        import mncore._fast._ring
        import mncore._fast._slots  # noqa: F401
    except ImportError as exc:
        return f"Cython extensions not built ({exc}); run: python setup.py build_ext --inplace"
    return None


CYTHON_SKIP = _cython_skip_reason()


def impl_params(*names: str) -> list[Any]:
    """pytest params for implementation names, the Cython ones skipped when not built."""
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=CYTHON_SKIP) if name == "cython" and CYTHON_SKIP else ())
        for name in names
    ]


def pair_params() -> list[Any]:
    """(writer, reader) in both directions."""
    marks = pytest.mark.skip(reason=CYTHON_SKIP) if CYTHON_SKIP else ()
    return [
        pytest.param("python", "cython", id="py-writes-cy-reads", marks=marks),
        pytest.param("cython", "python", id="cy-writes-py-reads", marks=marks),
    ]
