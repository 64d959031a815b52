"""Fixtures for mncore._fast: every test runs against both implementations."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fast_impls import IMPLS, impl_params
from fast_workers import classes

from mncore._fast.segment import unlink_segment

_counter = itertools.count()


@pytest.fixture(params=impl_params(*IMPLS))
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mailbox_cls(impl: str) -> Any:
    return classes(impl)[0]


@pytest.fixture
def table_cls(impl: str) -> Any:
    return classes(impl)[1]


@pytest.fixture
def shm_name() -> Iterator[Callable[[], str]]:
    """Unique segment names; every one handed out is unlinked after the test."""
    names: list[str] = []

    def make() -> str:
        name = f"mn_test_{os.getpid()}_{next(_counter)}"
        names.append(name)
        return name

    yield make
    for name in names:
        unlink_segment(name)


@pytest.fixture
def ctx_for() -> Iterator[Callable[[str], Any]]:
    """A multiprocessing context per start method; processes started through it are reaped."""
    procs: list[Any] = []

    def make(method: str) -> Any:
        ctx = multiprocessing.get_context(method)

        class _Ctx:
            Queue = ctx.Queue

            @staticmethod
            def Process(*args: Any, **kwargs: Any) -> Any:
                proc = ctx.Process(*args, daemon=True, **kwargs)
                procs.append(proc)
                return proc

        return _Ctx

    yield make
    for proc in procs:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
