"""The OpenAPI 3.0 document, generated from the same endpoint table as the routes.

Every operation documents its success response plus the errors any request can meet: 400 (bad
input, bad ``Content-Length``), 413 (too large), 503 (shutting down), 401 (when not public) and
404 (when the path names a resource).
"""

from __future__ import annotations

from typing import Any

from .routing import API_PREFIX, Endpoint, Op

__all__ = ["SCHEMAS", "document"]

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_OBJ: dict[str, Any] = {"type": "object"}
_STR_LIST = {"type": "array", "items": _STR}
_NULL_STR = {"type": "string", "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _data(item: str) -> dict[str, Any]:
    return _obj(["data"], data={"type": "array", "items": _ref(item)})


_LIMIT_VALUE = {
    "oneOf": [{"type": "integer", "enum": [25, 50, 75, 100]}, {"type": "string", "enum": ["25", "50", "75", "100"]}]
}
_FOUR_INTS = _obj(["cpu", "gpu", "memory", "disk"], cpu=_INT, gpu=_INT, memory=_INT, disk=_INT)

SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], error=_STR, errors=_STR_LIST, detail=_STR, limit_bytes=_INT),
    "OpenAPI": {**_OBJ, "description": "This document"},
    "Health": {**_obj(["status"], status={"type": "string", "enum": ["ok"]}), "additionalProperties": False},
    "SubmitJob": {
        **_OBJ,
        "description": "The manifest itself; or {manifest_json, payloads, force}; or {_bundle_path}",
        "minProperties": 1,
        "properties": {
            "manifest_json": _STR,
            "payloads": {"type": "object", "additionalProperties": {"oneOf": [_STR, _obj(["base64"], base64=_STR)]}},
            "_bundle_path": _STR,
        },
        "example": {
            "manifest_version": "1.0",
            "graph_id": "example",
            "entrypoints": ["r"],
            "initial_inputs": {"r": [{"n": 1}]},
            "nodes": [
                {"node_id": "r", "agent_type": "router"},
                {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 1}},
            ],
            "edges": [{"from_node": "r", "to_node": "out", "message_type": "*"}],
        },
    },
    "JobCreated": _obj(["id", "status"], id=_STR, status={"type": "string", "enum": ["pending"]}),
    "JobSummary": _obj(["job_id", "status"], job_id=_STR, graph_id=_STR, status=_STR),
    "JobList": _data("JobSummary"),
    "Event": _obj(["type"], type=_STR),
    "EventList": _data("Event"),
    "EventStream": {
        "description": "One server-sent event: job_event (id = event index) or heartbeat (api.md §5.1)",
        **_obj(["event", "data"], event={"type": "string", "enum": ["job_event", "heartbeat"]}, data=_STR, id=_STR),
    },
    "JobDetails": _obj(
        ["job", "summary", "agents", "recent_events", "sandboxes"],
        job=_OBJ,
        summary=_ref("JobSummary"),
        agents={"type": "array", "items": _OBJ},
        recent_events={"type": "array", "items": _ref("Event")},
        sandboxes={"type": "array", "items": _OBJ},
        failure=_OBJ,
    ),
    "AgentGraph": _obj(
        ["job_id", "graph_id", "status", "nodes", "edges", "stats"],
        job_id=_STR,
        nodes={"type": "array", "items": _obj(["id", "status"], id=_STR, status=_STR)},
        edges={"type": "array", "items": _obj(["id", "source", "target", "count"], id=_STR, count=_INT)},
        stats=_obj(["agent_count", "edge_count", "message_count", "event_count"]),
    ),
    "DeadLetters": _obj(
        ["job_id", "data"],
        job_id=_STR,
        data={
            "type": "array",
            "items": _obj(["index", "event_index", "agent_id", "reason"], index=_INT, event_index=_INT),
        },
    ),
    "ControlResult": _obj(["status", "job_id"], status=_STR, job_id=_STR),
    "Cleanup": _obj(["deleted_count", "deleted_jobs"], deleted_count=_INT, deleted_jobs=_STR_LIST),
    "Message": {**_OBJ, "description": "A message in legacy or mn-msg/1 form", "example": {"n": 2}},
    "Delivered": _obj(
        ["status", "job_id", "agent_id"], status={"type": "string", "enum": ["delivered"]}, job_id=_STR, agent_id=_STR
    ),
    "BundleUploadForm": _obj(["bundle"], bundle={"type": "string", "format": "binary"}),
    "BundleUpload": _obj(["bundle_path", "manifest"], bundle_path=_STR, manifest=_OBJ),
    "Bundle": _obj(
        ["bundle_id", "path", "fingerprint", "last_reloaded", "reload_mode"],
        bundle_id=_STR,
        path=_STR,
        fingerprint=_STR,
        last_reloaded=_STR,
        reload_mode=_STR,
    ),
    "BundleList": _data("Bundle"),
    "BundleReload": _obj(
        ["bundle_id", "changed", "reloaded", "message"],
        bundle_id=_STR,
        changed=_BOOL,
        reloaded=_BOOL,
        message=_STR,
        previous_fingerprint=_STR,
        current_fingerprint=_STR,
        reason=_STR,
        timestamp=_STR,
    ),
    "Limits": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {key: _LIMIT_VALUE for key in ("cpu", "gpu", "memory", "disk")},
    },
    "ResourceReport": _obj(
        ["mode", "node_count", "limits", "totals", "combined", "usable", "nodes"],
        mode={"type": "string", "enum": ["single_node", "cluster"]},
        node_count=_INT,
        limits=_FOUR_INTS,
        totals=_OBJ,
        combined=_OBJ,
        usable=_OBJ,
        nodes={"type": "array", "items": _OBJ},
    ),
    "Node": _obj(["name", "executor_pools"], name=_STR, connected_nodes=_STR_LIST, executor_pools=_OBJ),
    "NodeList": _data("Node"),
    "SystemSummary": _obj(
        ["nodes", "jobs"],
        nodes={"type": "array", "items": _ref("Node")},
        jobs={"type": "array", "items": _ref("JobSummary")},
    ),
    "Metrics": _obj(
        ["jobs", "nodes", "source"],
        jobs=_obj(["total", "by_status"], total=_INT, by_status={"type": "object", "additionalProperties": _INT}),
        nodes=_obj(["total"], total=_INT),
        source={"type": "string", "enum": ["system_summary"]},
    ),
}

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad request",
    401: "Missing or invalid bearer token",
    404: "Not found",
    413: "Request too large",
    422: "Unprocessable",
    500: "Failed",
    503: "Unavailable (shutting down)",
}


def _response(op: Op, status: int, schema: str) -> dict[str, Any]:
    media = "text/event-stream" if op.stream and status < 300 else "application/json"
    doc: dict[str, Any] = {
        "description": _REASONS.get(status, "Response"),
        "content": {media: {"schema": _ref(schema)}},
    }
    if status < 300 and op.links:
        doc["links"] = {
            name: {"operationId": target, "parameters": dict(params)} for name, (target, params) in op.links.items()
        }
    return doc


def _operation(op: Op) -> dict[str, Any]:
    statuses = {status: schema for status, schema in op.responses.items()}
    for status in (400, 413) if op.public else (400, 401, 413, 503):
        statuses.setdefault(status, "Error")
    if any(p.location == "path" for p in op.params):
        statuses.setdefault(404, "Error")
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "responses": {str(s): _response(op, s, statuses[s]) for s in sorted(statuses)},
    }
    if op.params:
        doc["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required,
                "schema": dict(p.schema),
                "description": p.description,
            }
            for p in op.params
        ]
    if op.body:
        kind, _, name = op.body.rpartition(":")
        media = "multipart/form-data" if kind == "multipart" else "application/json"
        doc["requestBody"] = {"required": op.body_required, "content": {media: {"schema": _ref(name)}}}
    if op.public:
        doc["security"] = []
    return doc


def document(endpoints: list[Endpoint], *, auth: bool, version: str = "1") -> dict[str, Any]:
    """The OpenAPI document for ``endpoints``; ``auth`` adds the global bearer requirement."""
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths[API_PREFIX + ep.path] = {op.method.lower(): _operation(op) for op in ep.ops}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "MirrorNeuron REST API", "version": version},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if auth:
        doc["security"] = [{"bearer": []}]
    return doc
