"""A small REST client for the CLI (stdlib only): JSON calls and the job event SSE stream.

Used where the gRPC API has no call (the bundle registry) and by ``mn job monitor`` when
``MN_API_BASE_URL`` is set (api.md §8). ``MN_API_TOKEN`` is sent as a bearer token.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from .._util import loads
from ..errors import MNError, NotFoundError, StateError, UnavailableError, ValidationError
from ..sdk import AuthError, RpcError

__all__ = ["RestClient"]

_ERRORS: dict[int, type[MNError]] = {
    400: ValidationError,
    401: AuthError,
    404: NotFoundError,
    412: StateError,
    422: ValidationError,
    503: UnavailableError,
}
_END = object()


class RestClient:
    """``/api/v1`` under ``base_url`` (``http://host:4000`` or ``http://host:4000/api/v1``)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        base = base_url.rstrip("/")
        self.base = base if base.endswith("/api/v1") else f"{base}/api/v1"
        self.token = token
        self.timeout = timeout

    def _open(self, method: str, path: str, timeout: float | None) -> Any:
        request = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise _error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise UnavailableError(f"REST API at {self.base} is unreachable: {exc}") from None

    def call(self, method: str, path: str) -> Any:
        with self._open(method, path, self.timeout) as response:
            return loads(response.read() or b"null")

    def job_events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """``GET /jobs/{id}/events/stream``: stored then live events (heartbeats as ``stream_heartbeat``)."""
        with self._open("GET", f"/jobs/{quote(job_id, safe='')}/events/stream", None) as response:
            kind, data = "message", []
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    event = loads("\n".join(data))
                    yield {"type": "stream_heartbeat", **event} if kind == "heartbeat" else event
                    kind, data = "message", []

    async def follow(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """:meth:`job_events` read in a daemon thread, handed to the event loop one by one."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def pump() -> None:
            try:
                for event in self.job_events(job_id):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # handed to the reader, which raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, _END)

        threading.Thread(target=pump, name=f"sse-{job_id}", daemon=True).start()
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item


def _error(exc: urllib.error.HTTPError) -> MNError:
    try:
        body = loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("error") if isinstance(body, dict) else None
    details = {"http_status": exc.code}
    errors = body.get("errors") if isinstance(body, dict) else None
    if exc.code in (400, 422) and isinstance(errors, list) and errors:
        return ValidationError([str(e) for e in errors], details=details)
    return _ERRORS.get(exc.code, RpcError)(str(message or f"HTTP {exc.code}"), details=details)
