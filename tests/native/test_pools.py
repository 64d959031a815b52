"""The multiprocess runtime: pool workers fed through shared memory, crash recovery, no leaks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
from native_helpers import fanout_bundle, process_settings

from mncore.execution.pools import ProcessBackend
from mncore.runtime import Runtime


def _segments(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))


async def _wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_runs_cross_processes_and_segments_are_unlinked(tmp_path: Path) -> None:
    settings = process_settings(tmp_path)
    async with Runtime(settings) as rt:
        job_id, record = await rt.run_manifest(fanout_bundle(tmp_path, 4, 3, sleep=0.01), wait=True, timeout=60)
        backend = rt.execution.backend
        assert isinstance(backend, ProcessBackend)
        worker_pids = {w["pid"] for w in backend.stats()["workers"]}
        prefix = backend._prefix
        assert _segments(prefix)  # created while running
        events = await rt.events(job_id)
    assert record["status"] == "completed"
    slept = {e["payload"]["pid"] for e in events if e["type"] == "slept"}
    assert slept and slept <= worker_pids and os.getpid() not in slept  # ran in the pool workers
    assert _segments(prefix) == []
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in worker_pids)


async def test_kill_9_worker_mid_run_loses_nothing(tmp_path: Path) -> None:
    settings = process_settings(tmp_path)
    async with Runtime(settings) as rt:
        job_id = await rt.run_manifest(fanout_bundle(tmp_path, 4, 4, sleep=0.3))
        backend = rt.execution.backend
        assert isinstance(backend, ProcessBackend)
        await _wait_until(lambda: any(s.runs for s in backend._slots))
        victim = next(s for s in backend._slots if s.runs)
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        record = await rt.wait_for_job(job_id, 60)
        assert record["status"] == "completed"
        assert record["result"]["output"]["count"] == 16  # every distinct run's output arrived
        events = await rt.events(job_id)
        lost = [e for e in events if e["type"] == "executor_worker_lost"]
        assert lost and all(e["payload"]["requeued"] for e in lost)
        assert backend.restarts == 1
        assert rt.execution.leases.stats()["default"] == {
            "capacity": 4,
            "in_use": 0,
            "available": 4,
            "queued": 0,
            "active": 0,
        }
        completed = [e for e in events if e["type"] == "sandbox_job_completed"]
        assert len(completed) == 16  # the re-queued attempt completed once; no agent saw a failure


async def test_python_timeout_kills_and_replaces_the_worker(tmp_path: Path) -> None:
    settings = process_settings(tmp_path)
    async with Runtime(settings) as rt:
        bundle = fanout_bundle(tmp_path, 1, 1, function="hang", timeout_seconds=0.5)
        job_id, record = await rt.run_manifest(bundle, wait=True, timeout=30)
        assert record["status"] == "failed"
        assert "python command timed out" in record["result"]["error"]
        assert rt.execution.backend.restarts == 1  # type: ignore[attr-defined]
        failed = [e for e in await rt.events(job_id) if e["type"] == "sandbox_job_failed"]
        assert failed and failed[0]["payload"]["error"]["details"]["message"] == "python command timed out"


async def test_cancel_kills_running_payloads_quickly(tmp_path: Path) -> None:
    settings = process_settings(tmp_path)
    async with Runtime(settings) as rt:
        job_id = await rt.run_manifest(fanout_bundle(tmp_path, 2, 1, function="hang"))
        backend = rt.execution.backend
        await _wait_until(lambda: sum(len(s.runs) for s in backend._slots) == 2)  # type: ignore[attr-defined]
        busy = [psutil.Process(s.pid) for s in backend._slots if s.runs]  # type: ignore[attr-defined]
        assert len(busy) == 2  # one blocking call per worker
        started = time.monotonic()
        assert await rt.cancel(job_id) == "cancelled"
        assert time.monotonic() - started < 2.0
        assert rt.execution.leases.stats()["default"]["in_use"] == 0
        gone, alive = psutil.wait_procs(busy, timeout=2)
        assert len(gone) == 2 and not alive  # the workers running the calls were killed
        await _wait_until(lambda: backend.restarts == 2)  # type: ignore[attr-defined]


SUPERVISOR = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {here!r})
    from pathlib import Path
    from native_helpers import fanout_bundle, process_settings
    from mncore.runtime import Runtime

    async def main():
        tmp = Path({tmp!r})
        rt = Runtime(process_settings(tmp))
        await rt.start()
        job_id = await rt.run_manifest(fanout_bundle(tmp, 2, 50, sleep=0.2))
        print(job_id, rt.execution.backend._prefix, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_kill_9_supervisor_then_restart_recovers(tmp_path: Path) -> None:
    script = SUPERVISOR.format(here=str(Path(__file__).parent), tmp=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        job_id, prefix = line.split()
        await asyncio.sleep(1.5)  # runs in flight
        supervisor = psutil.Process(proc.pid)
        proc.kill()
        proc.wait()
        assert supervisor.is_running() is False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    await asyncio.sleep(1.5)  # orphaned workers notice their supervisor is gone and exit
    settings = process_settings(tmp_path)
    async with Runtime(settings) as rt:
        assert await rt.recover_jobs() == [job_id]
        record = await rt.wait_for_job(job_id, 120)
        assert _segments(prefix) == []  # swept by the new supervisor
    assert record["status"] == "completed"
    assert record["result"]["output"]["count"] == 100


async def test_worker_signals_sigint_ignored_sigterm_drains_second_exits(tmp_path: Path) -> None:
    settings = process_settings(tmp_path, pool_workers=1)
    async with Runtime(settings) as rt:
        backend = rt.execution.backend
        assert isinstance(backend, ProcessBackend)
        job_id = await rt.run_manifest(fanout_bundle(tmp_path, 1, 1, sleep=1.5))
        await _wait_until(lambda: any(s.runs for s in backend._slots))
        worker = psutil.Process(backend._slots[0].pid)  # type: ignore[arg-type]
        worker.send_signal(signal.SIGINT)  # the supervisor owns Ctrl+C
        await asyncio.sleep(0.3)
        assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
        worker.send_signal(signal.SIGTERM)  # first: drain, the running call finishes
        record = await rt.wait_for_job(job_id, 30)
        assert record["status"] == "completed"
        await _wait_until(lambda: backend.restarts == 1)  # exited by itself once drained, and was replaced
        assert backend.exit_codes == [0]
        # second SIGTERM: exit at once, killing a running payload (its attempt is re-queued)
        slow = {
            "manifest_version": "1.0",
            "graph_id": "slow",
            "entrypoints": ["x"],
            "nodes": [
                {"node_id": "x", "agent_type": "executor", "config": {"runner": "host", "command": ["sleep", "30.3"]}}
            ],
        }
        slow_id = await rt.run_manifest(slow)
        await _wait_until(lambda: any(s.runs for s in backend._slots))
        second = psutil.Process(backend._slots[0].pid)  # type: ignore[arg-type]
        started = time.monotonic()
        second.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert second.is_running()  # draining: waits for the payload
        second.send_signal(signal.SIGTERM)
        await _wait_until(lambda: backend.restarts == 2)
        assert time.monotonic() - started < 5
        lost = [e for e in await rt.events(slow_id) if e["type"] == "executor_worker_lost"]
        assert lost and lost[0]["payload"]["requeued"] is True
        await rt.cancel(slow_id)
