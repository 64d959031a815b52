"""The ``docker`` runner: one container per attempt, or one shared container per job (exec).

The docker SDK is synchronous; every call runs on this runner's own thread pool (a run holds
one thread while it streams output, so the loop's small default pool is not used). The
container is named after the sandbox name, mounts the workspace at ``sandbox_upload_path``,
has no network unless ``network: true``, gets CPU/memory limits from the node's usable limits
lowered by the manifest node's ``resources``, and is removed after the run. Timeout and cancel
stop it (SIGTERM, SIGKILL after 1 s).

Shared mode (``reuse_shared_container`` / ``shared_container``): one long-lived container per
(job, agent) whose per-job directory is mounted at the same path inside it; each attempt's
workspace is created in that directory and seen at its host path (so payloads should use the
``MN_*`` paths, not a literal ``/sandbox/job``). ``cleanup_job`` removes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..._util import sanitize_name
from ...config import Settings
from ...errors import ExecutionError
from ..beacons import BeaconMonitor
from ..environment import MINIMAL_ENV, truthy
from ..output import StreamCapture
from ..process import KILL_GRACE_S, ProcessResult
from ..request import RunRequest
from ..tree import TreeSampler
from ..workspace import Workspace, sandbox_upload_path, stage
from .base import SubprocessRunner
from .docker_drive import ContainerDrive, Drive, ExecDrive, container_limits, sample_loop, threadsafe

logger = logging.getLogger(__name__)

__all__ = ["DockerRunner", "container_limits"]

_available: dict[str, tuple[bool, str]] = {}
_SLEEP_FOREVER = ["sleep", "2147483647"]


def _shared(config: dict[str, Any]) -> bool:
    return truthy(config.get("reuse_shared_container")) or truthy(config.get("shared_container"))


@dataclass(slots=True)
class _SharedContainer:
    container: Any
    host_dir: str


class DockerRunner(SubprocessRunner):
    name = "docker"
    python_fallback = False
    recycle_workspaces = False  # container processes may write as another user

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._client: Any = None
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="mn-docker")
        self._shared: dict[tuple[str, str], _SharedContainer] = {}
        self._shared_lock = threading.Lock()

    @classmethod
    def available(cls, settings: Settings) -> tuple[bool, str]:
        key = "default"  # the SDK reads DOCKER_HOST itself
        if key not in _available:
            try:
                import docker

                client = docker.from_env(timeout=10)
                try:
                    client.ping()
                finally:
                    client.close()
                _available[key] = (True, "")
            except Exception as exc:
                _available[key] = (False, f"docker daemon not reachable: {exc}")
        return _available[key]

    def base_env(self) -> dict[str, str]:
        return dict(MINIMAL_ENV)

    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=120)
        return self._client

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- staging --------------------------------------------------------------------------------
    def stage(self, request: RunRequest, name: str) -> Workspace:
        if not _shared(request.config):
            return super().stage(request, name)
        host_dir = os.path.join(self.settings.temp_dir, f"mirror_neuron_docker_{self._shared_name(request)}")
        os.makedirs(host_dir, exist_ok=True)
        return stage(request, self.name, name, host_dir, remote_root=None, recycle=False)

    @staticmethod
    def _shared_name(request: RunRequest) -> str:
        prefix = str(request.config.get("name_prefix") or "mirror-neuron")
        digest = hashlib.sha256(f"{prefix}|{request.job_id}|{request.agent_id}|shared".encode()).hexdigest()[:10]
        suffix = f"-{digest}-shared"
        return sanitize_name(f"{prefix}-{request.job_id}-{request.agent_id}")[: 63 - len(suffix)] + suffix

    # -- running --------------------------------------------------------------------------------
    async def execute(
        self,
        request: RunRequest,
        ws: Workspace,
        env: dict[str, str],
        argv: list[str],
        captures: tuple[StreamCapture, StreamCapture],
        timeout: float | None,
        beacons: BeaconMonitor,
        notes: list[str],
    ) -> tuple[ProcessResult, int]:
        image = request.config.get("image") or request.config.get("docker_worker_image")
        if not image:
            raise ExecutionError("docker runner requires config.image")
        try:
            return await self._execute(request, ws, env, argv, captures, timeout, beacons, str(image))
        except ExecutionError:
            raise
        except Exception as exc:  # the daemon or the SDK failed: the attempt fails, the executor lives
            raise ExecutionError(f"docker runner failed: {exc}") from exc

    async def _execute(
        self,
        request: RunRequest,
        ws: Workspace,
        env: dict[str, str],
        argv: list[str],
        captures: tuple[StreamCapture, StreamCapture],
        timeout: float | None,
        beacons: BeaconMonitor,
        image: str,
    ) -> tuple[ProcessResult, int]:
        config = request.config
        loop = asyncio.get_running_loop()
        feeds = (threadsafe(loop, captures[0].feed), threadsafe(loop, captures[1].feed))
        drive: Drive
        if _shared(config):
            shared = await self._call(self._shared_container, request, image)
            drive = ExecDrive(self.client(), shared.container, argv, env, ws.workdir, feeds)
        else:
            kwargs = self._container_kwargs(request, ws, env, argv, image)
            container = await self._call(self._create, kwargs)
            drive = ContainerDrive(container, feeds)
        try:
            return await self._supervise(drive, loop, timeout, beacons)
        finally:
            if isinstance(drive, ContainerDrive):
                await self._call(drive.remove)

    def _container_kwargs(
        self, request: RunRequest, ws: Workspace, env: dict[str, str], argv: list[str], image: str
    ) -> dict[str, Any]:
        config = request.config
        kwargs: dict[str, Any] = {
            "image": image,
            "command": argv,
            "name": ws.name,
            "working_dir": ws.workdir,
            "environment": env,
            "volumes": {ws.host_path: {"bind": sandbox_upload_path(config), "mode": "rw"}},
            "labels": {"mirror_neuron.job_id": request.job_id, "mirror_neuron.agent_id": request.agent_id},
            **container_limits(request.limits, request.resources),
        }
        if not truthy(config.get("network")):
            kwargs["network_mode"] = "none"
        if os.getuid() != 0:  # files the payload writes must stay removable by the runtime
            kwargs["user"] = f"{os.getuid()}:{os.getgid()}"
        return kwargs

    def _create(self, kwargs: dict[str, Any]) -> Any:
        import docker.errors

        containers = self.client().containers
        try:
            return containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            self._pull(kwargs["image"])
            return containers.create(**kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a stale container of the same name
                raise ExecutionError(f"docker runner cannot create container: {exc.explanation or exc}") from exc
            containers.get(kwargs["name"]).remove(force=True)
            return containers.create(**kwargs)

    def _pull(self, image: str) -> None:
        try:
            self.client().images.pull(image)
        except Exception as exc:
            raise ExecutionError(f"docker image {image} is not available: {exc}") from exc

    async def _supervise(
        self, drive: Drive, loop: asyncio.AbstractEventLoop, timeout: float | None, beacons: BeaconMonitor
    ) -> tuple[ProcessResult, int]:
        result = ProcessResult(exit_code=0)
        started = loop.time()
        sampling: dict[str, Any] = {}
        drive.on_pid = threadsafe(loop, lambda pid: sample_loop(loop, sampling, pid))
        fut = loop.run_in_executor(self._pool, drive.run)

        def on_missed() -> None:
            result.beacon_missed = True
            self._stop(drive)

        beacons.on_missed = on_missed
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            result.timed_out = True
            await self._stop(drive)
        except asyncio.CancelledError:
            await asyncio.wait_for(self._stop(drive), KILL_GRACE_S + 5)
            raise
        finally:
            handle = sampling.pop("handle", None)
            if handle is not None:
                handle.cancel()
        code = int(await fut)
        sampler: TreeSampler | None = sampling.get("sampler")
        result.exit_code = code
        result.wall_ms = int((loop.time() - started) * 1000)
        if sampler is not None:
            result.peak_rss_bytes = sampler.peak_rss
            result.cpu_user_ms, result.cpu_system_ms = sampler.cpu_user_ms, sampler.cpu_system_ms
        return result, code

    def _stop(self, drive: Drive) -> asyncio.Future[Any]:
        return asyncio.ensure_future(self._call(drive.stop))

    # -- shared containers ------------------------------------------------------------------------
    def _shared_container(self, request: RunRequest, image: str) -> _SharedContainer:
        key = (request.job_id, request.agent_id)
        with self._shared_lock:
            shared = self._shared.get(key)
            if shared is not None:
                return shared
            host_dir = os.path.join(self.settings.temp_dir, f"mirror_neuron_docker_{self._shared_name(request)}")
            kwargs: dict[str, Any] = {
                "image": image,
                "command": _SLEEP_FOREVER,
                "name": self._shared_name(request),
                "volumes": {host_dir: {"bind": host_dir, "mode": "rw"}},
                "labels": {"mirror_neuron.job_id": request.job_id, "mirror_neuron.shared": "1"},
                **container_limits(request.limits, request.resources),
            }
            if not truthy(request.config.get("network")):
                kwargs["network_mode"] = "none"
            if os.getuid() != 0:
                kwargs["user"] = f"{os.getuid()}:{os.getgid()}"
            container = self._create(kwargs)
            container.start()
            shared = self._shared[key] = _SharedContainer(container, host_dir)
            return shared

    async def close(self) -> None:
        """Remove every shared container and release the client and threads."""
        for job_id in {key[0] for key in self._shared}:
            await self.cleanup_job(job_id)
        if self._client is not None:
            self._client.close()
            self._client = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def cleanup_job(self, job_id: str) -> None:
        with self._shared_lock:
            doomed = [self._shared.pop(key) for key in list(self._shared) if key[0] == job_id]
        for shared in doomed:
            try:
                await self._call(lambda c=shared.container: c.remove(force=True))
            except Exception as exc:
                logger.warning("could not remove shared container %s: %s", shared.container.name, exc)
            shutil.rmtree(shared.host_dir, ignore_errors=True)
