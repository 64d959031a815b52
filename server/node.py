"""``mn server``: the node daemon (runtime-lifecycle.md §7, ARCHITECTURE.md §1).

Lifecycle, in order: settings → runtime (store, pools) → bind every listener → recover unfinished
jobs → bundle registry scan → serve → ``READY=1``. One shutdown path:

1. first SIGTERM or SIGINT: ``STOPPING=1``; new submissions get 503 while reads and control calls
   still answer; running executor payloads get ``MN_SHUTDOWN_GRACE_SECONDS`` to finish, the rest
   are killed (their messages replay after restart); every lease is released; exit 0;
2. a second SIGTERM/SIGINT skips the rest of the grace period;
3. SIGHUP: re-read resource limits, rescan ``MN_BUNDLES_DIR``, reopen the log file.

Listeners share the node's loop and follow the :class:`Listener` protocol; :func:`listeners` is
the one place that lists them (the gRPC server joins there).
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import signal
from typing import Protocol

from mncore import _loop
from mncore.config import Settings
from mncore.errors import ConfigError, MNError
from mncore.runtime import Runtime

from .rest.server import GRACEFUL_TIMEOUT_S, RestServer
from .systemd import Notifier

logger = logging.getLogger(__name__)

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_SOFTWARE", "EXIT_UNAVAILABLE", "Listener", "Node", "main"]

EXIT_OK = 0
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the store or a port could not be opened at start
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a listener or the runtime failed unexpectedly
EXIT_CONFIG = 78  # EX_CONFIG: a setting is invalid (systemd: RestartPreventExitStatus)


class Listener(Protocol):
    """A server on the node's loop: bound before readiness, served until ``stop`` is set."""

    name: str

    def bind(self) -> str: ...

    def closing(self) -> None: ...

    async def serve(self, stop: asyncio.Event) -> None: ...


def listeners(runtime: Runtime, settings: Settings) -> list[Listener]:
    """Every listener this node runs, per settings."""
    found: list[Listener] = []
    if settings.api_enabled:
        found.append(RestServer(runtime, settings))
    if settings.grpc_enabled:
        from .grpc_api import GrpcServer  # grpc core starts only for nodes that serve it

        found.append(GrpcServer(runtime, settings, GRACEFUL_TIMEOUT_S))
    return found


def check_settings(settings: Settings) -> None:
    if settings.env == "prod" and not settings.api_token:
        raise ConfigError("MN_ENV=prod requires MN_API_TOKEN: the REST API refuses to start without a bearer token")


class Node:
    """One ``mn server`` process; :meth:`run` returns the exit code."""

    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.runtime = Runtime(settings)
        self.notifier = notifier or Notifier()
        self.listeners = listeners(self.runtime, settings)
        self.shutdown = asyncio.Event()
        self.stop_listeners = asyncio.Event()
        self.hard = False
        self._tasks: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None

    # -- signals ---------------------------------------------------------------------------
    def request_shutdown(self, signame: str = "SIGTERM") -> None:
        if self.shutdown.is_set():
            logger.warning("%s again: skipping the rest of the drain grace period", signame)
            self.hard = True
            self.runtime.skip_drain()
            return
        logger.info("%s: draining (grace %.0f s)", signame, self.settings.shutdown_grace_seconds)
        self.shutdown.set()

    def request_reload(self) -> None:
        asyncio.get_running_loop().create_task(self.reload(), name="sighup-reload")

    async def reload(self) -> None:
        self.notifier.reloading()
        try:
            result = await self.runtime.reload_config()
            reopen_log_files()
            logger.info("SIGHUP: limits %s, new bundles %s", result["limits"], result["bundles_added"])
        except Exception:
            logger.exception("SIGHUP reload failed")
        self.notifier.ready("serving (configuration reloaded)")

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        try:
            code = await self._start()
            if code != EXIT_OK:
                return code
            return await self._serve_until_shutdown()
        except Exception:
            logger.exception("node failed")
            await self.runtime.bundles.close()
            await self.runtime.close()  # a no-op when it already closed
            return EXIT_SOFTWARE
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.close()

    async def _start(self) -> int:
        try:
            await self.runtime.start()
            urls = [listener.bind() for listener in self.listeners]
        except (MNError, OSError) as exc:
            logger.error("node start failed: %s", exc)
            await self.runtime.close()
            return EXIT_UNAVAILABLE
        recovered = await self.runtime.recover_jobs()
        added = await self.runtime.bundles.scan()
        self.runtime.bundles.start()
        self._tasks = [asyncio.create_task(li.serve(self.stop_listeners), name=li.name) for li in self.listeners]
        self._watchdog = asyncio.create_task(self.notifier.watchdog_loop(), name="watchdog")
        status = f"serving {' '.join(urls) or '(no listeners)'}; {len(recovered)} job(s) recovered"
        logger.info("%s; %d bundle(s) registered", status, len(added))
        self.notifier.ready(status)
        return EXIT_OK

    async def _serve_until_shutdown(self) -> int:
        waiter = asyncio.create_task(self.shutdown.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        crashed = [t for t in done if t is not waiter]
        for task in crashed:
            logger.error("listener %s stopped unexpectedly", task.get_name(), exc_info=task.exception())
        await self._drain_and_stop()
        return EXIT_SOFTWARE if crashed else EXIT_OK

    async def _drain_and_stop(self) -> None:
        grace = 0.0 if self.hard else self.settings.shutdown_grace_seconds
        self.notifier.stopping(f"draining (grace {grace:.0f} s)", extend_s=grace + GRACEFUL_TIMEOUT_S + 10)
        await self.runtime.bundles.close()
        await self.runtime.close(grace)
        for listener in self.listeners:
            listener.closing()
        self.stop_listeners.set()
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=GRACEFUL_TIMEOUT_S + 2)
        if self._watchdog is not None:
            pending.add(self._watchdog)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        logger.info("node stopped")


# -- process entry -----------------------------------------------------------------------------

_LOG_FORMAT = "%(asctime)s %(levelname)s pid=%(process)d role=server %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Daemon logging: stderr (journald), plus ``MN_LOG_FILE`` when set (reopened on SIGHUP)."""
    root = logging.getLogger()
    level = getattr(logging, (settings.log_level or "INFO").upper(), logging.INFO)
    root.setLevel(level)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        handlers.append(logging.handlers.WatchedFileHandler(settings.log_file))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        root.addHandler(handler)


def reopen_log_files() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.reopenIfNeeded()


def main(host: str | None = None, port: int | None = None, grpc_port: int | None = None) -> int:
    """Run the node until it is told to stop; returns the exit code (see ``EXIT_*``)."""
    try:
        settings = Settings.from_env(api_host=host, api_port=port, grpc_port=grpc_port)
        check_settings(settings)
    except ConfigError as exc:
        logging.basicConfig(format=_LOG_FORMAT)
        logger.error("%s", exc)
        return EXIT_CONFIG
    configure_logging(settings)

    async def go() -> int:
        return await Node(settings).run()

    return _loop.run(go())
