"""Bundles, settings and raw-key checks for the runtime-on-Redis tests (``test_runtime_on_redis``).

Everything here reads Redis with a plain synchronous ``redis.Redis`` client, never through the
store, so the tests check what is really on the server: key names, types and JSON documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from mncore.config import Settings

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TERMINAL_EVENTS = ("job_completed", "job_failed", "job_cancelled")
JOB_FIELDS = (
    "job_id",
    "graph_id",
    "job_name",
    "status",
    "submitted_at",
    "updated_at",
    "daemon",
    "root_agent_ids",
    "placement_policy",
    "recovery_policy",
    "result",
    "manifest_ref",
)
SNAPSHOT_FIELDS = (
    "agent_id",
    "node_id",
    "agent_type",
    "type",
    "role",
    "current_state",
    "mailbox_depth",
    "processed_messages",
    "assigned_node",
    "inflight_message",
    "pending_messages",
    "last_heartbeat_at",
    "parent_job_id",
    "metadata",
)
SNAPSHOT_METADATA = ("paused", "outbound_edges", "heartbeat_interval_ms", "recovery_state")

# ---- settings and bundles -------------------------------------------------------------------------


def redis_settings(tmp: Path, url: str | None, namespace: str, **overrides: Any) -> Settings:
    """Inline execution with the host runner, fast timers, the store on ``url`` under ``namespace``."""
    values: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "home": str(tmp / "home"),
        "temp_dir": str(tmp / "work"),
        "node_name": "mn@redis-a",
        "default_runner": "host",
        "execution_mode": "inline",
        "job_health_check_interval_ms": 200,
        "agent_heartbeat_interval_ms": 200,
        "store_url": url,
        "redis_namespace": namespace,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


SINK = '''
class Distinct:
    """Completes once every expected key arrived at least once (duplicates are fine, losses are not)."""

    def init(self, node):
        return {"keys": [], "expected": node["config"]["expected"]}

    def handle_message(self, message, state, context):
        if message.body["key"] not in state["keys"]:
            state["keys"].append(message.body["key"])
        if len(state["keys"]) == state["expected"]:
            return state, [("complete_job", {"count": len(state["keys"])})]
        return state, []
'''

PUMP = '''
import asyncio


class Pump:
    """One tick per message, a few ms apart: a steady stream of events for as long as ``n`` ticks take."""

    def init(self, node):
        return {"ticks": 0}

    async def handle_message(self, message, state, context):
        await asyncio.sleep(float(message.body["pause"]))
        i, n = message.body.get("i", 0), message.body["n"]
        state["ticks"] = i + 1
        actions = [("event", "pumped", {"i": i}), ("emit", "tick", {"key": f"k{i}"})]
        if i + 1 < n:
            actions.append(("emit_to", "pump", "next", {**message.body, "i": i + 1}))
        return state, actions
'''

# The host-runner payload: sleeps, then emits one message whose key names the executor and input.
WORK = (
    "import json, os, time\n"
    "body = json.load(open(os.environ['MN_BODY_FILE']))\n"
    "time.sleep(body['sleep'])\n"
    "key = os.environ['MN_AGENT_ID'] + ':' + str(body['i'])\n"
    "print(json.dumps({'emit_messages': [{'type': 'work_done', 'body': {'key': key}}]}))\n"
)


def _write(root: Path, manifest: dict[str, Any], files: dict[str, str]) -> str:
    (root / "payloads").mkdir(parents=True)
    for name, text in files.items():
        (root / "payloads" / name).write_text(text)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


def sink_node(expected: int) -> dict[str, Any]:
    config = {"module": "mn_redis_sink.Distinct", "module_source": "mn_redis_sink.py", "expected": expected}
    return {"node_id": "done", "agent_type": "module", "config": config}


def stream_bundle(tmp: Path, ticks: int, pause: float) -> str:
    """``pump`` (module, ``ticks`` messages to itself) -> ``relay`` (router) -> ``done`` (distinct sink)."""
    pump = {"module": "mn_redis_pump.Pump", "module_source": "mn_redis_pump.py"}
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "stream",
        "entrypoints": ["pump"],
        "nodes": [
            {"node_id": "pump", "agent_type": "module", "role": "root", "config": pump},
            {"node_id": "relay", "agent_type": "router"},
            sink_node(ticks),
        ],
        "edges": [
            {"from_node": "pump", "to_node": "relay", "message_type": "tick"},
            {"from_node": "relay", "to_node": "done", "message_type": "*"},
        ],
        "initial_inputs": {"pump": [{"n": ticks, "pause": pause}]},
    }
    return _write(tmp / f"stream-{ticks}", manifest, {"mn_redis_pump.py": PUMP, "mn_redis_sink.py": SINK})


def fanout_bundle(tmp: Path, executors: int, messages: int, sleep: float) -> str:
    """``split`` (router) sends every seed to ``executors`` host-runner executors; ``done`` completes."""
    nodes: list[dict[str, Any]] = [{"node_id": "split", "agent_type": "router", "role": "root"}]
    edges = []
    for i in range(executors):
        config = {"runner": "host", "command": [sys.executable, "-c", WORK], "output_message_type": None}
        nodes.append({"node_id": f"x{i}", "agent_type": "executor", "config": config})
        edges.append({"from_node": "split", "to_node": f"x{i}", "message_type": "*"})
        edges.append({"from_node": f"x{i}", "to_node": "done", "message_type": "work_done"})
    nodes.append(sink_node(executors * messages))
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "fanout",
        "nodes": nodes,
        "edges": edges,
        "initial_inputs": {"split": [{"i": i, "sleep": sleep} for i in range(messages)]},
    }
    return _write(tmp / f"fanout-{executors}x{messages}", manifest, {"mn_redis_sink.py": SINK})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- raw reads ------------------------------------------------------------------------------------


def raw_events(r: redis.Redis, ns: str, job_id: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in r.lrange(f"{ns}:job:{job_id}:events", 0, -1)]


def raw_record(r: redis.Redis, ns: str, job_id: str) -> dict[str, Any]:
    body = r.get(f"{ns}:job:{job_id}")
    assert body is not None, f"no job record for {job_id}"
    return dict(json.loads(body))


def raw_snapshots(r: redis.Redis, ns: str, job_id: str) -> dict[str, dict[str, Any]]:
    """Every snapshot named by the agent set, read from its own key."""
    agent_ids = sorted(_text(member) for member in r.smembers(f"{ns}:job:{job_id}:agents"))
    snapshots = {}
    for agent_id in agent_ids:
        body = r.get(f"{ns}:job:{job_id}:agent:{agent_id}")
        assert body is not None, f"agent {agent_id} is in the agent set but has no snapshot key"
        snapshots[agent_id] = json.loads(body)
    return snapshots


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def key_types(r: redis.Redis, ns: str) -> dict[str, str]:
    return {_text(key): _text(r.type(key)) for key in r.scan_iter(match=f"{ns}:*")}


# ---- checks -----------------------------------------------------------------------------------------


def received(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Agent id -> message ids of its ``agent_message_received`` events, in list order."""
    out: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "agent_message_received":
            out.setdefault(event["agent_id"], []).append(event["payload"]["message_id"])
    return out


def check_event_list(events: list[dict[str, Any]], job_id: str, *, terminal: bool) -> None:
    """Shapes (§9), ``job_pending`` first, time order, and exactly one terminal event, last (or none)."""
    assert events and events[0]["type"] == "job_pending", events[:1]
    for event in events:
        assert event["job_id"] == job_id and ISO.match(event["timestamp"]), event
        if "payload" in event:  # agent events carry agent_id and payload (§9.2)
            assert isinstance(event["agent_id"], str) and isinstance(event["payload"], dict), event
    stamps = [event["timestamp"] for event in events]
    assert stamps == sorted(stamps), "events are not in append order"
    ends = [i for i, event in enumerate(events) if event["type"] in TERMINAL_EVENTS]
    assert ends == ([len(events) - 1] if terminal else []), [events[i]["type"] for i in ends]


def check_snapshots_match_events(snapshots: dict[str, dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """A consistent cut: each snapshot counts exactly the messages its agent's events say it received."""
    counts = {agent_id: len(ids) for agent_id, ids in received(events).items()}
    for agent_id, snapshot in snapshots.items():
        assert snapshot["processed_messages"] == counts.get(agent_id, 0), (agent_id, snapshot, counts.get(agent_id))


def duplicates(ids: list[str]) -> set[str]:
    return {message_id for message_id, n in Counter(ids).items() if n > 1}


class ChannelRecorder:
    """Every message PUBLISHed on ``<ns>:channel:events:*``, recorded by a plain client in a thread."""

    def __init__(self, client: redis.Redis, ns: str) -> None:
        self._client = client
        self._pubsub = client.pubsub()
        self._pubsub.psubscribe(f"{ns}:channel:events:*")
        confirmed = self._pubsub.get_message(timeout=5)  # the server has registered the pattern
        assert confirmed is not None and confirmed["type"] == "psubscribe", confirmed
        self.messages: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="channel-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None and message["type"] == "pmessage":
                self.messages.append((message["channel"].decode(), message["data"]))

    def on(self, channel: str) -> list[bytes]:
        return [data for name, data in list(self.messages) if name == channel]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()


class ReplyLosingProxy:
    """A TCP proxy in front of redis-server that can lose the reply to one event write after it was applied.

    ``arm()``: the next ``EVALSHA`` request that appends events goes through and runs on the server, but
    its reply is thrown away and the connection is cut, as when Redis goes away right after a write.
    The proxy then *holds* (cuts every connection at once) until ``release()``.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.lost = asyncio.Event()
        self._armed = False
        self._holding = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def arm(self) -> None:
        self._armed = True

    def release(self) -> None:
        self._holding = False

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._holding:
                return
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            doomed = asyncio.Event()
            pumps = {
                asyncio.ensure_future(self._requests(reader, upstream, doomed)),
                asyncio.ensure_future(self._replies(up_reader, writer, doomed)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    end.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await end.wait_closed()
            self._tasks.discard(task)

    async def _requests(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, doomed: asyncio.Event
    ) -> None:
        while data := await reader.read(1 << 16):
            if self._holding:  # every connection is cut while holding, pooled ones included
                return
            if self._armed and data.upper().find(b"EVALSHA") >= 0 and b":events" in data:
                self._armed = False
                doomed.set()
            upstream.write(data)
            await upstream.drain()

    async def _replies(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: asyncio.Event
    ) -> None:
        while data := await up_reader.read(1 << 16):
            if doomed.is_set():  # the write ran on the server; its answer never arrives
                self._holding = True
                self.lost.set()
                return
            writer.write(data)
            await writer.drain()
