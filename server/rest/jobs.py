"""Job routes: submit, list, details, control, cleanup, events, messages (api.md §3, §4)."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from mncore.errors import ValidationError
from mncore.monitor import ACTIVE, TERMINAL
from mncore.submission import parse_submission

from ._http import INT_MAX, JSON, json_body, query_bool, query_int, runtime, settings
from .routing import Endpoint, Op, Param

__all__ = ["ENDPOINTS"]

STATUSES = sorted(ACTIVE | TERMINAL | {"queued"})
JOB_ID = Param("job_id", "path", {"type": "string"}, "Job id")
_STATUS = "(" + "|".join(STATUSES) + ")"
_STATUS_LIST = {"type": "string", "pattern": f"^{_STATUS}(,{_STATUS})*$"}


def _job_id(request: Request) -> str:
    return str(request.path_params["job_id"])


async def submit_job(request: Request) -> Response:
    rt = runtime(request)
    rt.check_accepting()  # before reading the body: a draining node refuses at once
    source, payloads = parse_submission(await json_body(request), settings(request).uploads_dir)
    job_id = await rt.submit(source, payloads or None)
    return JSON({"id": job_id, "status": "pending"}, status_code=201)


def _statuses(request: Request) -> list[str] | None:
    raw = request.query_params.get("status")
    if raw is None:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise ValidationError(f"status must be a comma list of job statuses ({', '.join(STATUSES)}); got {raw!r}")
    return wanted


async def list_jobs(request: Request) -> Response:
    data = await runtime(request).list_jobs(
        limit=query_int(request, "limit", None, 1),
        include_terminal=query_bool(request, "include_terminal", True),
        live_only=query_bool(request, "live_only", False),
        statuses=_statuses(request),
    )
    return JSON({"data": data})


async def get_job(request: Request) -> Response:
    event_limit = query_int(request, "event_limit", 25, 0)
    return JSON(await runtime(request).job_details(_job_id(request), event_limit or 0))


def _control(verb: str) -> Op:
    async def control(request: Request) -> Response:
        job_id = _job_id(request)
        status = await getattr(runtime(request), verb)(job_id)
        return JSON({"status": status, "job_id": job_id})

    return Op("POST", control, f"{verb}Job", f"{verb.capitalize()} a job", {200: "ControlResult"}, (JOB_ID,))


async def cleanup_jobs(request: Request) -> Response:
    return JSON(await runtime(request).cleanup_jobs(all=query_bool(request, "all", False)))


async def job_events(request: Request) -> Response:
    limit = query_int(request, "limit", None, 1)
    return JSON({"data": await runtime(request).events(_job_id(request), -limit if limit else 0)})


async def send_message(request: Request) -> Response:
    job_id, agent_id = _job_id(request), str(request.path_params["agent_id"])
    message = await json_body(request)
    if not isinstance(message, dict):
        raise ValidationError("message must be a JSON object (legacy or mn-msg/1 form)")
    status = await runtime(request).send_message(job_id, agent_id, message)
    return JSON({"status": status, "job_id": job_id, "agent_id": agent_id})


async def agent_graph(request: Request) -> Response:
    return JSON(await runtime(request).agent_graph(_job_id(request)))


async def dead_letters(request: Request) -> Response:
    return JSON(await runtime(request).dead_letters(_job_id(request)))


_BOOL = {"type": "boolean"}
_BY_ID = {"job_id": "$response.body#/id"}
_JOB_LINKS = {
    "GetJob": ("getJob", _BY_ID),
    "ListJobEvents": ("listJobEvents", _BY_ID),
    "PauseJob": ("pauseJob", _BY_ID),
    "ResumeJob": ("resumeJob", _BY_ID),
    "CancelJob": ("cancelJob", _BY_ID),
    "SendMessage": ("sendMessage", {**_BY_ID, "agent_id": "r"}),
}
_LIST_PARAMS = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": INT_MAX}, "At most this many jobs"),
    Param("include_terminal", "query", _BOOL, "false excludes completed, failed and cancelled jobs"),
    Param("live_only", "query", _BOOL, "Only jobs with live agents"),
    Param("status", "query", _STATUS_LIST, "Comma list of statuses"),
)
_cleanup = Op(
    "POST",
    cleanup_jobs,
    "cleanupJobs",
    "Delete terminal jobs (all=true: every job, active ones cancelled first)",
    {200: "Cleanup"},
    (Param("all", "query", _BOOL, "Also cancel and delete active jobs"),),
)

ENDPOINTS = [
    Endpoint(
        "/jobs",
        (
            Op(
                "POST", submit_job, "submitJob", "Submit a job", {201: "JobCreated"}, body="SubmitJob", links=_JOB_LINKS
            ),
            Op("GET", list_jobs, "listJobs", "List jobs, newest first", {200: "JobList"}, _LIST_PARAMS),
        ),
    ),
    Endpoint("/jobs/cleanup", (_cleanup,)),
    Endpoint("/jobs:cleanup", (replace(_cleanup, operation_id="cleanupJobsColon"),)),
    Endpoint(
        "/jobs/{job_id}",
        (
            Op(
                "GET",
                get_job,
                "getJob",
                "Job details",
                {200: "JobDetails", 404: "Error"},
                (
                    JOB_ID,
                    Param(
                        "event_limit",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": INT_MAX},
                        "Recent events to include",
                    ),
                ),
            ),
        ),
    ),
    Endpoint("/jobs/{job_id}/cancel", (_control("cancel"),)),
    Endpoint("/jobs/{job_id}/pause", (_control("pause"),)),
    Endpoint("/jobs/{job_id}/resume", (_control("resume"),)),
    Endpoint(
        "/jobs/{job_id}/events",
        (
            Op(
                "GET",
                job_events,
                "listJobEvents",
                "Job events, oldest first",
                {200: "EventList", 404: "Error"},
                (
                    JOB_ID,
                    Param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": INT_MAX},
                        "Only the last N events",
                    ),
                ),
            ),
        ),
    ),
    Endpoint(
        "/jobs/{job_id}/agents/{agent_id}/messages",
        (
            Op(
                "POST",
                send_message,
                "sendMessage",
                "Send a message to an agent",
                {200: "Delivered", 404: "Error"},
                (JOB_ID, Param("agent_id", "path", {"type": "string"}, "Agent id")),
                body="Message",
            ),
        ),
    ),
    Endpoint(
        "/jobs/{job_id}/agent-graph",
        (Op("GET", agent_graph, "agentGraph", "Agents and edges", {200: "AgentGraph"}, (JOB_ID,)),),
    ),
    Endpoint(
        "/jobs/{job_id}/dead-letters",
        (Op("GET", dead_letters, "deadLetters", "Undeliverable messages", {200: "DeadLetters"}, (JOB_ID,)),),
    ),
]
