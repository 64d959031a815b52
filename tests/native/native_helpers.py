"""Bundles and settings for the multiprocess runtime tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mncore.config import Settings

SINK = '''
class Distinct:
    """Completes once every expected key was seen at least once (duplicates are fine)."""

    def init(self, node):
        return {"keys": [], "expected": node["config"]["expected"], "seen": 0}

    def handle_message(self, message, state, context):
        state["seen"] += 1
        if message.body["key"] not in state["keys"]:
            state["keys"].append(message.body["key"])
        if len(state["keys"]) == state["expected"]:
            return state, [("complete_job", {"count": len(state["keys"]), "deliveries": state["seen"]})]
        return state, []
'''

PAYLOAD = """
import os, time

def sleepy(request):
    body = request["input"]
    time.sleep(float(body.get("sleep", 0.2)))
    key = f"{request['context']['agent_id']}:{body['i']}"
    return {
        "events": [{"type": "slept", "payload": {"pid": os.getpid()}}],
        "emit_messages": [{"type": "work_done", "body": {"key": key}}],
    }

def noop(request):
    return None

def hang(request):
    time.sleep(3600)
"""


def process_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "home": str(tmp / "home"),
        "temp_dir": str(tmp / "work"),
        "node_name": "mn@native",
        "default_runner": "host",
        "execution_mode": "process",
        "executor_max_concurrency": 4,
        "pool_workers": 2,
        "job_health_check_interval_ms": 200,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


def fanout_bundle(tmp: Path, executors: int, messages: int, function: str = "sleepy", **config: Any) -> str:
    """``split`` (router) fans every seed out to ``executors`` python-runner executors; a sensor completes."""
    sleep = config.pop("sleep", 0.2)
    root = tmp / f"bundle-{function}-{executors}x{messages}"
    (root / "payloads").mkdir(parents=True)
    (root / "payloads" / "work.py").write_text(PAYLOAD)
    (root / "payloads" / "sink.py").write_text(SINK)
    nodes: list[dict[str, Any]] = [{"node_id": "split", "agent_type": "router", "role": "root"}]
    edges = []
    for i in range(executors):
        nodes.append(
            {
                "node_id": f"x{i}",
                "agent_type": "executor",
                "config": {
                    "runner": "python",
                    "python_callable": f"work:{function}",
                    "output_message_type": None,
                    **config,
                },
            }
        )
        edges.append({"from_node": "split", "to_node": f"x{i}", "message_type": "*"})
        edges.append({"from_node": f"x{i}", "to_node": "done", "message_type": "work_done"})
    nodes.append(
        {
            "node_id": "done",
            "agent_type": "module",
            "config": {"module": "sink.Distinct", "module_source": "sink.py", "expected": executors * messages},
        }
    )
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "fanout",
        "nodes": nodes,
        "edges": edges,
        "initial_inputs": {"split": [{"i": i, "sleep": sleep} for i in range(messages)]},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)
