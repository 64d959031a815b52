"""Runner selection (executor-contract.md §1) and the runner registry."""

from __future__ import annotations

import msgpack
import pytest

from mncore.config import Settings
from mncore.errors import ValidationError
from mncore.execution import AttemptOutcome, RunRequest, get_runner, resolve_runner
from mncore.execution.runners import bwrap as bwrap_module
from mncore.execution.runners.bwrap import BwrapRunner, probe_bwrap
from mncore.execution.runners.docker import DockerRunner
from mncore.execution.runners.host import HostRunner
from mncore.execution.runners.python import PythonRunner


@pytest.fixture
def broken(settings: Settings) -> Settings:
    return settings.replace(bwrap_bin="/nonexistent/bwrap")


def test_explicit_runners(settings: Settings) -> None:
    for name in ("host", "docker", "python"):
        assert resolve_runner({"runner": name}, settings) == (name, None)
    with pytest.raises(ValidationError, match='unsupported runner "lxc"'):
        resolve_runner({"runner": "lxc"}, settings)


def test_explicit_bwrap_falls_back_to_host_when_broken(broken: Settings) -> None:
    runner, fallback = resolve_runner({"runner": "bwrap"}, broken)
    assert runner == "host"
    assert fallback is not None and set(fallback) == {"requested", "selected", "reason"}
    assert fallback["requested"] == "bwrap" and fallback["selected"] == "host"
    assert "/nonexistent/bwrap" in fallback["reason"] and "MN_BWRAP_BIN" in fallback["reason"]


def test_default_runner_auto(bwrap_settings: Settings, broken: Settings) -> None:
    assert resolve_runner({}, bwrap_settings) == ("bwrap", None)
    assert resolve_runner({"runner": "bwrap"}, bwrap_settings) == ("bwrap", None)
    runner, fallback = resolve_runner({}, broken)
    assert runner == "host" and fallback is not None and fallback["requested"] == "auto"


def test_default_runner_host_gives_no_warning(broken: Settings) -> None:
    host = broken.replace(default_runner="host")
    assert resolve_runner({}, host) == ("host", None)
    assert resolve_runner({"runner_module": "MirrorNeuron.Sandbox.OpenShell"}, host) == ("host", None)
    explicit = broken.replace(default_runner="bwrap")
    assert resolve_runner({}, explicit)[1] == {
        "requested": "bwrap",
        "selected": "host",
        "reason": probe_bwrap(explicit)[1],
    }
    assert resolve_runner({}, broken.replace(default_runner="docker")) == ("docker", None)


def test_legacy_runner_module_mapping(bwrap_settings: Settings, broken: Settings) -> None:
    assert resolve_runner({"runner_module": "MirrorNeuron.Runner.HostLocal"}, broken) == ("host", None)
    assert resolve_runner({"runner_module": "MirrorNeuron.Runner.DockerWorker"}, broken) == ("docker", None)
    for module in ("MirrorNeuron.Sandbox.OpenShell", "MirrorNeuron.Runner.OpenShell"):
        assert resolve_runner({"runner_module": module}, bwrap_settings) == ("bwrap", None)
        assert resolve_runner({"runner_module": module}, broken)[0] == "host"
    assert resolve_runner({"runner": "docker", "runner_module": "MirrorNeuron.Runner.HostLocal"}, broken) == (
        "docker",
        None,
    )


def test_unknown_runner_module(bwrap_settings: Settings) -> None:
    assert resolve_runner({"runner_module": "Acme.Runner"}, bwrap_settings) == (
        "bwrap",
        {"requested": "Acme.Runner", "selected": "bwrap", "reason": "unknown runner_module Acme.Runner"},
    )
    host = bwrap_settings.replace(default_runner="host")
    assert resolve_runner({"runner_module": "Acme.Runner"}, host)[1] == {
        "requested": "Acme.Runner",
        "selected": "host",
        "reason": "unknown runner_module Acme.Runner",
    }


def test_probe_runs_once_per_process(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Settings] = []
    original = bwrap_module._probe

    def counting(s: Settings) -> tuple[bool, str]:
        calls.append(s)
        return original(s)

    monkeypatch.setattr(bwrap_module, "_probe", counting)
    fresh = settings.replace(node_name="probe-once")
    first = probe_bwrap(fresh)
    for _ in range(3):
        resolve_runner({}, fresh)
        assert probe_bwrap(fresh) == first
    assert len(calls) == 1


def test_registry(settings: Settings) -> None:
    classes = {"host": HostRunner, "bwrap": BwrapRunner, "docker": DockerRunner, "python": PythonRunner}
    for name, cls in classes.items():
        runner = get_runner(name, settings)
        assert isinstance(runner, cls) and runner.name == name
        assert get_runner(name, settings) is runner
    assert HostRunner.available(settings) == (True, "")
    with pytest.raises(ValidationError):
        get_runner("nope", settings)


def test_request_and_outcome_cross_msgpack() -> None:
    request = RunRequest(
        job_id="j", agent_id="a", runner="python", config={"x": [1]}, message={"body": b"\xff\x00"},
        agent_state={"k": 1}, lease={"lease_id": "L"}, limits={"cpu_cores": 2},
    )  # fmt: skip
    wire = msgpack.packb(request.to_dict(), use_bin_type=True)
    assert RunRequest.from_dict(msgpack.unpackb(wire, raw=False)) == request
    assert RunRequest.from_dict({**request.to_dict(), "future_field": 1}) == request
    outcome = AttemptOutcome({"exit_code": 0, "stdout": "x"}, {"events": []})
    back = AttemptOutcome.from_dict(msgpack.unpackb(msgpack.packb(outcome.to_dict()), raw=False))
    assert back == outcome and back.ok and back.error is None
    failed = AttemptOutcome({"error": "boom"})
    assert not failed.ok and failed.error == "boom"
