"""Server-sent events: ``GET /jobs/{job_id}/events/stream`` (api.md §5.1).

Frames: ``id: <event index>\\nevent: job_event\\ndata: <event>\\n\\n``, and ``event: heartbeat`` with
``{job_id, timestamp}`` after ``MN_API_SSE_HEARTBEAT_SECONDS`` (5) of silence. JSON is written
with sorted keys on one line. ``Last-Event-ID`` resumes after that index; ``replay=false``
sends only live events. The stream ends after the job's terminal event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mncore._util import dumps
from mncore.errors import MNError, ValidationError
from mncore.live import LiveItem

from ._http import query_bool, runtime, settings
from .routing import Endpoint, Op, Param

logger = logging.getLogger(__name__)

__all__ = ["ENDPOINTS", "frame"]

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(item: LiveItem) -> bytes:
    index, event = item
    if index is None:
        data = dumps({"job_id": event.get("job_id"), "timestamp": event.get("timestamp")}, sort_keys=True)
        return b"event: heartbeat\ndata: " + data + b"\n\n"
    return b"id: %d\nevent: job_event\ndata: %s\n\n" % (index, dumps(event, sort_keys=True))


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    if not raw:
        return -1
    if not raw.isdigit():
        raise ValidationError(f"Last-Event-ID must be an event index (an integer >= 0), got {raw!r}")
    return int(raw)


async def _frames(items: AsyncGenerator[LiveItem, None]) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield frame(item)
    except MNError as exc:  # the job vanished (cleanup) or the store failed mid-stream: end it
        logger.info("event stream ended early: %s", exc)
    finally:
        await items.aclose()


async def stream_job_events(request: Request) -> Response:
    rt = runtime(request)
    job_id = str(request.path_params["job_id"])
    after = _last_event_id(request)
    replay = query_bool(request, "replay", True)
    await rt.inspect_job(job_id)  # 404 before the stream starts
    items = rt.stream_events(job_id, after, replay, True, settings(request).api_sse_heartbeat_seconds)
    return StreamingResponse(_frames(items), media_type="text/event-stream", headers=HEADERS)


ENDPOINTS = [
    Endpoint(
        "/jobs/{job_id}/events/stream",
        (
            Op(
                "GET",
                stream_job_events,
                "streamJobEvents",
                "Job events as server-sent events",
                {200: "EventStream"},
                (
                    Param("job_id", "path", {"type": "string"}, "Job id"),
                    Param("replay", "query", {"type": "boolean"}, "false: only live events"),
                    Param(
                        "Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]+$"}, "Resume after this index"
                    ),
                ),
                stream=True,
            ),
        ),
    ),
]
