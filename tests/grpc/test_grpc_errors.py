"""The interceptor applies the shared error table (server/errors.py) on a real port.

A grpc.aio server with the production interceptor and servicers that raise each kind of runtime
error; an aio channel calls it. Also: the shutdown gate, streams that fail mid-way, and the SDK's
mapping of each status code back to a typed exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio

from mncore._proto import job_pb2, job_pb2_grpc, observability_pb2, observability_pb2_grpc
from mncore.errors import (
    AgentNotFound,
    JobNotFound,
    ManifestError,
    MNError,
    NotFoundError,
    RequirementsNotMet,
    ResourceOverloaded,
    RetryLaterError,
    ShuttingDown,
    StateError,
    StoreUnavailable,
    UnavailableError,
    ValidationError,
    WaitTimeoutError,
)
from mncore.sdk import AsyncClient, RpcError
from server.grpc_interceptors import Gate, ServiceInterceptor

RAISES: dict[str, BaseException] = {
    "job": JobNotFound("j1"),
    "agent": AgentNotFound("a", "j1"),
    "invalid": ValidationError("limit must be a positive integer"),
    "manifest": ManifestError(["graph_id is required", "nodes must not be empty"]),
    "state": StateError("job is not running"),
    "requirements": RequirementsNotMet("redis"),
    "overloaded": ResourceOverloaded("cpu"),
    "retry": RetryLaterError("executor pool default is full; retry later"),
    "timeout": WaitTimeoutError("timed out waiting for job j1"),
    "store": StoreUnavailable("redis is unreachable"),
    "stopping": ShuttingDown(),
    "bug": RuntimeError("boom"),
}
S = grpc.StatusCode
EXPECTED: dict[str, tuple[grpc.StatusCode, str]] = {
    "job": (S.NOT_FOUND, "job j1 was not found"),
    "agent": (S.NOT_FOUND, "agent a is not running for job j1"),
    "invalid": (S.INVALID_ARGUMENT, "limit must be a positive integer"),
    "manifest": (S.INVALID_ARGUMENT, "graph_id is required; nodes must not be empty"),
    "state": (S.FAILED_PRECONDITION, "job is not running"),
    "requirements": (S.FAILED_PRECONDITION, "requirements_not_met: redis"),
    "overloaded": (S.RESOURCE_EXHAUSTED, "resource_overloaded: cpu"),
    "retry": (S.RESOURCE_EXHAUSTED, "executor pool default is full; retry later"),
    "timeout": (S.DEADLINE_EXCEEDED, "timed out waiting for job j1"),
    "store": (S.UNAVAILABLE, "redis is unreachable"),
    "stopping": (S.UNAVAILABLE, "node is shutting down"),
    "bug": (S.INTERNAL, "internal server error"),
}
SDK_CLASSES: dict[str, type[MNError]] = {
    "job": NotFoundError,
    "invalid": ValidationError,
    "state": StateError,
    "retry": RetryLaterError,
    "timeout": WaitTimeoutError,
    "store": UnavailableError,
    "bug": RpcError,
}


class Failing(job_pb2_grpc.JobServiceServicer):
    async def GetJob(self, request: Any, context: Any) -> Any:
        raise RAISES[request.job_id]


class FailingStream(observability_pb2_grpc.ObservabilityServiceServicer):
    async def StreamEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield observability_pb2.StreamEventsResponse(event_json='{"type": "job_pending"}', version=1)
        raise RAISES[request.job_id]


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Gate]]:
    gate = Gate()
    server = aio.server(interceptors=[ServiceInterceptor(gate)])
    job_pb2_grpc.add_JobServiceServicer_to_server(Failing(), server)
    observability_pb2_grpc.add_ObservabilityServiceServicer_to_server(FailingStream(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", gate
    await server.stop(None)


async def _status(target: str, job_id: str) -> aio.AioRpcError:
    async with aio.insecure_channel(target) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await job_pb2_grpc.JobServiceStub(channel).GetJob(job_pb2.GetJobRequest(job_id=job_id))
    return info.value


@pytest.mark.parametrize("case", list(RAISES))
async def test_each_error_maps_to_its_code(served: tuple[str, Gate], case: str) -> None:
    error = await _status(served[0], case)
    assert (error.code(), error.details()) == EXPECTED[case]


async def test_validation_errors_travel_in_trailing_metadata(served: tuple[str, Gate]) -> None:
    error = await _status(served[0], "manifest")
    trailing = dict(error.trailing_metadata() or ())
    assert trailing["mn-errors-bin"] == b'["graph_id is required","nodes must not be empty"]'


async def test_a_stream_failing_midway_ends_with_the_mapped_code(served: tuple[str, Gate]) -> None:
    async with aio.insecure_channel(served[0]) as channel:
        stub = observability_pb2_grpc.ObservabilityServiceStub(channel)
        received = []
        with pytest.raises(aio.AioRpcError) as info:
            async for item in stub.StreamEvents(observability_pb2.StreamEventsRequest(job_id="state")):
                received.append(item.event_json)
    assert received == ['{"type": "job_pending"}']
    assert (info.value.code(), info.value.details()) == (S.FAILED_PRECONDITION, "job is not running")


async def test_the_gate_answers_unavailable_once_stopping(served: tuple[str, Gate]) -> None:
    target, gate = served
    gate.stopping = True
    error = await _status(target, "job")
    assert (error.code(), error.details()) == (S.UNAVAILABLE, "node is shutting down")


@pytest.mark.parametrize("case", list(SDK_CLASSES))
async def test_sdk_maps_codes_to_typed_errors(served: tuple[str, Gate], case: str) -> None:
    async with AsyncClient(served[0], timeout=5, auth_token="", admin_token="") as client:
        with pytest.raises(MNError) as info:
            await client.get_job(case)
    assert type(info.value) is SDK_CLASSES[case]
    assert info.value.message == EXPECTED[case][1]
    assert info.value.details["grpc_code"] == EXPECTED[case][0].name


async def test_sdk_keeps_every_validation_message(served: tuple[str, Gate]) -> None:
    async with AsyncClient(served[0], timeout=5, auth_token="", admin_token="") as client:
        with pytest.raises(ValidationError) as info:
            await client.get_job("manifest")
    assert info.value.errors == ["graph_id is required", "nodes must not be empty"]
