"""Executor runs: one invocation attempt from a :class:`RunRequest` to an :class:`AttemptOutcome`.

``runners`` holds the runner contract and the host, bwrap, docker and python runners;
``workspace``, ``environment``, ``process`` and ``output`` are the pieces they share.
"""

from __future__ import annotations

from .output import is_transient
from .request import AttemptOutcome, RunRequest
from .runners import Runner, get_runner, resolve_runner

__all__ = ["AttemptOutcome", "RunRequest", "Runner", "get_runner", "is_transient", "resolve_runner"]
