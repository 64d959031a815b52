"""A client built only from the original's .proto shapes (compiled at test time), run as its own process.

``python original_client.py <generated dir> <target>`` drives every RPC of the server and prints one
JSON object of observations; it imports nothing from this project (the generated modules and the
project's own stubs would clash in protobuf's default descriptor pool, and the point is to show
that a foreign client needs nothing from us).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import grpc

QUICK = {
    "manifest_version": "1.0",
    "graph_id": "original_client",
    "entrypoints": ["r"],
    "initial_inputs": {"r": [{"n": 1}]},
    "nodes": [
        {"node_id": "r", "agent_type": "router"},
        {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 2}},
    ],
    "edges": [{"from_node": "r", "to_node": "out", "message_type": "*"}],
}


def code(call: Any) -> list[str]:
    try:
        call()
    except grpc.RpcError as exc:
        return [exc.code().name, exc.details()]
    return ["OK", ""]


def wait_status(jobs: Any, pb: Any, job_id: str, wanted: str) -> None:
    for _ in range(300):
        if json.loads(jobs.GetJob(pb.OrigJobRef(job_id=job_id, version=1)).job_json)["job"]["status"] == wanted:
            return
        time.sleep(0.05)
    raise SystemExit(f"job {job_id} never reached {wanted}")


def main(target: str) -> dict[str, Any]:
    from mirrorneuron.cluster.v1 import cluster_pb2 as cpb
    from mirrorneuron.cluster.v1 import cluster_pb2_grpc as cgrpc
    from mirrorneuron.job.v1 import job_pb2 as pb
    from mirrorneuron.job.v1 import job_pb2_grpc as jgrpc
    from mirrorneuron.observability.v1 import observability_pb2 as opb
    from mirrorneuron.observability.v1 import observability_pb2_grpc as ogrpc

    out: dict[str, Any] = {}
    with grpc.insecure_channel(target) as channel:
        jobs, cluster = jgrpc.JobServiceStub(channel), cgrpc.ClusterServiceStub(channel)
        events = ogrpc.ObservabilityServiceStub(channel)
        submitted = jobs.SubmitJob(pb.OrigSubmit(manifest_json=json.dumps(QUICK), payloads={"a.txt": b"x"}, version=1))
        job_id = submitted.job_id
        out["submit"] = [submitted.status, submitted.version]
        wait_status(jobs, pb, job_id, "running")
        out["pause"] = jobs.PauseJob(pb.OrigJobRef(job_id=job_id, version=1)).status
        out["resume"] = jobs.ResumeJob(pb.OrigJobRef(job_id=job_id, version=1)).status
        sent = jobs.SendMessage(pb.OrigSend(job_id=job_id, agent_id="r", message_json='{"n": 2}', version=1))
        out["send"] = sent.status
        stream = events.StreamEvents(opb.OrigStreamRequest(job_id=job_id, follow=True, heartbeat_interval_ms=200))
        out["events"] = [json.loads(e.event_json)["type"] for e in stream]
        out["get"] = sorted(json.loads(jobs.GetJob(pb.OrigJobRef(job_id=job_id)).job_json))
        out["list"] = [
            j["job_id"] for j in json.loads(jobs.ListJobs(pb.OrigListJobs(include_terminal=True)).jobs_json)["data"]
        ]
        out["job_id"] = job_id
        out["cancel_terminal"] = code(lambda: jobs.CancelJob(pb.OrigJobRef(job_id=job_id)))
        out["cancel_unknown"] = code(lambda: jobs.CancelJob(pb.OrigJobRef(job_id="nope")))
        out["summary_keys"] = sorted(json.loads(cluster.GetSystemSummary(cpb.OrigVersionOnly()).summary_json))
        out["resource_version"] = json.loads(cluster.GetResource(cpb.OrigVersionOnly()).resource_json)["version"]
        out["set_resource_bad"] = code(lambda: cluster.SetResource(cpb.OrigResource(resource_json='{"gpu": 1}')))
        out["clear"] = jobs.ClearJobs(pb.OrigClear(version=1)).cleared_count
        out["later_job_rpc"] = code(lambda: jobs.CancelAllJobs(pb.OrigVersionOnly(version=1)))
        out["later_cluster_rpc"] = code(lambda: cluster.AddNode(cpb.OrigAddNode(node_name="mn@x")))
    return out


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    print(json.dumps(main(sys.argv[2])))
