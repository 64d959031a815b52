"""The one error table: exception class (or spec'd message prefix) → HTTP status and gRPC code."""

from __future__ import annotations

import pytest

from mncore import errors as e
from server.errors import grpc_code_name, http_status, wire_code


@pytest.mark.parametrize(
    ("exc", "http", "grpc"),
    [
        (e.JobNotFound("j"), 404, "NOT_FOUND"),
        (e.AgentNotFound("a", "j"), 404, "NOT_FOUND"),
        (e.BundleNotFound("b"), 404, "NOT_FOUND"),
        (e.ManifestError(["x", "y"]), 400, "INVALID_ARGUMENT"),
        (e.ValidationError("bad"), 400, "INVALID_ARGUMENT"),
        (e.StateError("job is not running"), 400, "FAILED_PRECONDITION"),
        (e.RetryLaterError("later"), 503, "RESOURCE_EXHAUSTED"),
        (e.WaitTimeoutError("timed out waiting for job j"), 504, "DEADLINE_EXCEEDED"),
        (e.StoreUnavailable("down"), 503, "UNAVAILABLE"),
        (e.ShuttingDown(), 503, "UNAVAILABLE"),
        (e.ConfigError("MN_X"), 500, "INTERNAL"),
        (e.ExecutionError("boom"), 500, "INTERNAL"),
        (e.MNError("other"), 500, "INTERNAL"),
        (TimeoutError(), 504, "DEADLINE_EXCEEDED"),
        (KeyError("k"), 500, "INTERNAL"),
        (e.RequirementsNotMet("db"), 412, "FAILED_PRECONDITION"),
        (e.ResourceOverloaded("cpu"), 503, "RESOURCE_EXHAUSTED"),
        (e.BundleReloadInvalid(["a", "b"]), 422, "INVALID_ARGUMENT"),
        (e.MissingManifestSource(), 422, "INVALID_ARGUMENT"),
        (e.FingerprintFailed("missing_manifest"), 500, "INTERNAL"),
    ],
)
def test_table(exc: BaseException, http: int, grpc: str) -> None:
    assert (http_status(exc), grpc_code_name(exc)) == (http, grpc)


def test_leaf_classes_map_like_their_parent() -> None:
    class NewLeaf(e.NotFoundError):
        """A leaf added later without touching the table."""

    assert wire_code(NewLeaf("x")) == wire_code(e.JobNotFound("j"))


def test_grpc_names_exist_in_grpc() -> None:
    grpc = pytest.importorskip("grpc")
    from server.errors import TABLE

    for code in TABLE.values():
        assert hasattr(grpc.StatusCode, code.grpc)
