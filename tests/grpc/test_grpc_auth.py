"""Bearer-token auth on a real server: every service RPC needs the token, health and reflection
do not, ``ClearJobs`` also needs the admin token (api.md §6)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mn_grpc_testlib import ADMIN_TOKEN, AUTH_TOKEN, GrpcServer, quick_job

from mncore._proto import cluster_pb2, cluster_pb2_grpc, job_pb2, job_pb2_grpc, observability_pb2
from mncore._proto import observability_pb2_grpc as obs_grpc

pytestmark = pytest.mark.slow

AUTH_REQUIRED = "gRPC auth token is required for this RPC"
ADMIN_REQUIRED = "ClearJobs requires the admin token (MN_GRPC_ADMIN_TOKEN)"


def every_rpc(channel: grpc.Channel) -> dict[str, Callable[[Any], Any]]:
    """One call per service RPC, each taking the metadata to send."""
    jobs = job_pb2_grpc.JobServiceStub(channel)
    cluster = cluster_pb2_grpc.ClusterServiceStub(channel)
    obs = obs_grpc.ObservabilityServiceStub(channel)
    manifest = json.dumps(quick_job("auth"))
    return {
        "SubmitJob": lambda md: jobs.SubmitJob(job_pb2.SubmitJobRequest(manifest_json=manifest), metadata=md),
        "GetJob": lambda md: jobs.GetJob(job_pb2.GetJobRequest(job_id="x"), metadata=md),
        "ListJobs": lambda md: jobs.ListJobs(job_pb2.ListJobsRequest(), metadata=md),
        "CancelJob": lambda md: jobs.CancelJob(job_pb2.CancelJobRequest(job_id="x"), metadata=md),
        "PauseJob": lambda md: jobs.PauseJob(job_pb2.PauseJobRequest(job_id="x"), metadata=md),
        "ResumeJob": lambda md: jobs.ResumeJob(job_pb2.ResumeJobRequest(job_id="x"), metadata=md),
        "ClearJobs": lambda md: jobs.ClearJobs(job_pb2.ClearJobsRequest(admin_token=ADMIN_TOKEN), metadata=md),
        "SendMessage": lambda md: jobs.SendMessage(
            job_pb2.SendMessageRequest(job_id="x", agent_id="a", message_json="{}"), metadata=md
        ),
        "GetSystemSummary": lambda md: cluster.GetSystemSummary(cluster_pb2.GetSystemSummaryRequest(), metadata=md),
        "GetResource": lambda md: cluster.GetResource(cluster_pb2.GetResourceRequest(), metadata=md),
        "SetResource": lambda md: cluster.SetResource(
            cluster_pb2.SetResourceRequest(resource_json='{"cpu": 100}'), metadata=md
        ),
        "StreamEvents": lambda md: list(
            obs.StreamEvents(observability_pb2.StreamEventsRequest(job_id="x"), metadata=md)
        ),
    }


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic " + AUTH_TOKEN),), (("x-other", "1"),)],
    ids=["none", "wrong", "other-scheme", "other-key"],
)
def test_every_rpc_needs_the_token(auth_server: GrpcServer, metadata: tuple[tuple[str, str], ...]) -> None:
    with grpc.insecure_channel(auth_server.target) as channel:
        for name, call in every_rpc(channel).items():
            with pytest.raises(grpc.RpcError) as info:
                call(metadata)
            assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, AUTH_REQUIRED), name


@pytest.mark.parametrize("value", [f"Bearer {AUTH_TOKEN}", f"bearer  {AUTH_TOKEN}", AUTH_TOKEN])
def test_the_token_opens_every_rpc(auth_server: GrpcServer, value: str) -> None:
    metadata = (("authorization", value),)
    with grpc.insecure_channel(auth_server.target) as channel:
        for name, call in every_rpc(channel).items():
            try:
                call(metadata)
            except grpc.RpcError as exc:  # past auth: the call's own answer (unknown job x)
                assert exc.code() in (grpc.StatusCode.NOT_FOUND,), (name, exc.code(), exc.details())


def test_clear_jobs_needs_the_admin_token(auth_server: GrpcServer) -> None:
    metadata = (("authorization", f"Bearer {AUTH_TOKEN}"),)
    with grpc.insecure_channel(auth_server.target) as channel:
        jobs = job_pb2_grpc.JobServiceStub(channel)
        for given in ("", "wrong", AUTH_TOKEN):
            with pytest.raises(grpc.RpcError) as info:
                jobs.ClearJobs(job_pb2.ClearJobsRequest(admin_token=given), metadata=metadata)
            assert (info.value.code(), info.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, ADMIN_REQUIRED)
        assert jobs.ClearJobs(job_pb2.ClearJobsRequest(admin_token=ADMIN_TOKEN), metadata=metadata).version == 1


def test_health_and_reflection_need_no_token(auth_server: GrpcServer) -> None:
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(auth_server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        service = health_pb2.HealthCheckRequest(service="mirrorneuron.job.v1.JobService")
        assert health.Check(service).status == health_pb2.HealthCheckResponse.SERVING
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {"mirrorneuron.job.v1.JobService", "grpc.health.v1.Health"} <= set(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        methods = pool.FindServiceByName("mirrorneuron.job.v1.JobService").methods_by_name
        assert set(methods) >= {"SubmitJob", "GetJob", "ListJobs", "ClearJobs", "SendMessage"}
        submit = pool.FindMessageTypeByName("mirrorneuron.job.v1.SubmitJobRequest")
        assert submit.file.name == "mirrorneuron/job/v1/job.proto"
        assert [(f.name, f.number) for f in submit.fields] == [("manifest_json", 1), ("payloads", 2), ("version", 3)]
        stream = pool.FindServiceByName("mirrorneuron.observability.v1.ObservabilityService")
        assert stream.methods_by_name["StreamEvents"].server_streaming


def test_sdk_raises_typed_auth_errors(auth_server: GrpcServer) -> None:
    from mncore.sdk import AuthError, Client, PermissionDeniedError

    with Client(auth_server.target, auth_token="", admin_token="") as anonymous:
        with pytest.raises(AuthError) as info:
            anonymous.list_jobs()
        assert info.value.message == AUTH_REQUIRED
        assert info.value.details == {"grpc_code": "UNAUTHENTICATED"}
    with Client(auth_server.target, auth_token=AUTH_TOKEN, admin_token="") as user:
        assert user.list_jobs() == [] or isinstance(user.list_jobs(), list)
        with pytest.raises(PermissionDeniedError):
            user.clear_jobs()
    with Client(auth_server.target, auth_token=AUTH_TOKEN, admin_token=ADMIN_TOKEN) as admin:
        assert admin.clear_jobs() >= 0
