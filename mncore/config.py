"""Settings: the one typed configuration object, and the only module that reads the environment.

``Settings.from_env()`` reads every ``MN_<NAME>`` variable, falling back to the legacy
``MIRROR_NEURON_<NAME>`` spelling when the canonical one is unset. Defaults live on the class.
Invalid values raise :class:`~mncore.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)

RUNNERS = ("auto", "host", "bwrap", "docker")


def _default_data_dir() -> str:
    import platformdirs

    return platformdirs.user_data_dir("mirror-neuron")


def _env(name: str, default: Any = None) -> Any:
    return field(default=default, metadata={"env": name})


def _env_factory(name: str, factory: Any) -> Any:
    return field(default_factory=factory, metadata={"env": name})


@dataclass(frozen=True)
class Settings:
    """Every knob of a node. Field metadata ``env`` names the variable suffix (after ``MN_``)."""

    # identity and paths
    node_name: str = _env_factory("NODE_NAME", lambda: f"mn@{socket.gethostname()}")
    node_role: str = _env("NODE_ROLE", "runtime")
    data_dir: str = _env_factory("DATA_DIR", _default_data_dir)
    home: str = _env_factory("HOME", lambda: str(Path.home() / ".mn"))
    temp_dir: str = _env("TEMP_DIR", "/tmp/mirror_neuron")
    # persistence
    store_url: str | None = _env("STORE_URL")
    redis_url: str | None = _env("REDIS_URL")
    redis_namespace: str = _env("REDIS_NAMESPACE", "mirror_neuron")
    store_flush_interval_ms: float = _env("STORE_FLUSH_INTERVAL_MS", 5.0)
    # executors
    default_runner: str = _env("DEFAULT_RUNNER", "auto")
    bwrap_bin: str = _env("BWRAP_BIN", "bwrap")
    executor_max_concurrency: int = _env("EXECUTOR_MAX_CONCURRENCY", 4)
    executor_pool_capacities: str | None = _env("EXECUTOR_POOL_CAPACITIES")
    pool_workers: int = _env("POOL_WORKERS", 0)  # 0 = min(capacity, cores)
    execution_mode: str = _env("EXECUTION_MODE", "process")  # process | inline
    lease_queue_timeout_ms: int = _env("LEASE_QUEUE_TIMEOUT_MS", 0)
    lease_max_queue_length: int = _env("LEASE_MAX_QUEUE_LENGTH", 0)
    max_artifact_bytes: int = _env("MAX_ARTIFACT_BYTES", 1048576)
    max_command_length: int = _env("MAX_COMMAND_LENGTH", 32768)
    # lifecycle timers
    job_health_check_interval_ms: int = _env("JOB_HEALTH_CHECK_INTERVAL_MS", 2000)
    agent_heartbeat_interval_ms: int = _env("AGENT_HEARTBEAT_INTERVAL_MS", 2000)
    shutdown_grace_seconds: float = _env("SHUTDOWN_GRACE_SECONDS", 30.0)
    # REST
    env: str = _env("ENV", "dev")
    api_enabled: bool = _env("API_ENABLED", True)
    api_host: str = _env("API_HOST", "127.0.0.1")
    api_port: int = _env("API_PORT", 4000)
    api_token: str | None = _env("API_TOKEN")
    api_request_size_limit_bytes: int = _env("API_REQUEST_SIZE_LIMIT_BYTES", 5242880)
    api_upload_size_limit_bytes: int = _env("API_UPLOAD_SIZE_LIMIT_BYTES", 52428800)
    api_cors_allow_origins: str | None = _env("API_CORS_ALLOW_ORIGINS")
    api_base_url: str | None = _env("API_BASE_URL")
    api_sse_heartbeat_seconds: float = _env("API_SSE_HEARTBEAT_SECONDS", 5.0)
    # daemon logging (`mn server`); SIGHUP reopens the file
    log_level: str | None = _env("LOG_LEVEL")
    log_file: str | None = _env("LOG_FILE")
    # gRPC
    grpc_enabled: bool = _env("GRPC_ENABLED", True)
    grpc_host: str = _env("GRPC_HOST", "127.0.0.1")
    grpc_port: int = _env("GRPC_PORT", 50051)
    grpc_target: str = _env("GRPC_TARGET", "localhost:50051")
    grpc_timeout_seconds: float = _env("GRPC_TIMEOUT_SECONDS", 10.0)
    grpc_auth_token: str | None = _env("GRPC_AUTH_TOKEN")
    grpc_admin_token: str | None = _env("GRPC_ADMIN_TOKEN")
    # bundles
    bundles_dir: str | None = _env("BUNDLES_DIR")
    bundle_reload_mode: str | None = _env("BUNDLE_RELOAD_MODE")
    bundle_reload_interval_seconds: float | None = _env("BUNDLE_RELOAD_INTERVAL_SECONDS")
    # CLI
    cli_output: str = _env("CLI_OUTPUT", "rich")

    def __post_init__(self) -> None:
        if self.default_runner not in RUNNERS:
            raise ConfigError(f"MN_DEFAULT_RUNNER must be one of {', '.join(RUNNERS)} (got {self.default_runner!r})")
        if not isinstance(self.executor_max_concurrency, int) or self.executor_max_concurrency < 1:
            raise ConfigError(
                f"MN_EXECUTOR_MAX_CONCURRENCY must be a positive integer (got {self.executor_max_concurrency!r})"
            )
        if self.execution_mode not in ("process", "inline"):
            raise ConfigError(f"MN_EXECUTION_MODE must be process or inline (got {self.execution_mode!r})")

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MN_*`` (then ``MIRROR_NEURON_*``) variables; ``overrides`` win over both."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            suffix = f.metadata["env"]
            raw = env.get(f"MN_{suffix}")
            if raw is None:
                raw = env.get(f"MIRROR_NEURON_{suffix}")
            if suffix in ("GRPC_AUTH_TOKEN", "GRPC_ADMIN_TOKEN") and raw is None:
                raw = _read_secret_file(env, suffix)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f"MN_{suffix}", f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Build from field names (e.g. a parsed config file); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**dict(mapping))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    # ---- derived values -----------------------------------------------------------------

    @property
    def pool_capacities(self) -> dict[str, int]:
        """``{pool: capacity}``: ``default`` from the max concurrency, others from the capacity list."""
        pools = {"default": self.executor_max_concurrency}
        for entry in (self.executor_pool_capacities or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            name, sep, value = entry.partition("=")
            name = name.strip()
            try:
                capacity = int(value.strip()) if sep else 0
            except ValueError:
                capacity = 0
            if not name or capacity < 1:
                logger.warning("MN_EXECUTOR_POOL_CAPACITIES: ignoring invalid entry %r (want name=N, N >= 1)", entry)
                continue
            pools[name] = capacity
        return pools

    @property
    def store_target(self) -> str:
        """The store URL in effect: ``MN_STORE_URL``, else ``MN_REDIS_URL``, else the embedded file."""
        if self.store_url:
            return self.store_url
        if self.redis_url:
            return self.redis_url
        return f"sqlite:///{Path(self.data_dir) / 'store.sqlite3'}"

    @property
    def bundles_store_dir(self) -> Path:
        return Path(self.data_dir) / "bundles"

    @property
    def uploads_dir(self) -> Path:
        return Path(self.data_dir) / "uploads"


def _read_secret_file(env: Mapping[str, str], suffix: str) -> str | None:
    path = env.get(f"MN_{suffix}_FILE") or env.get(f"MIRROR_NEURON_{suffix}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"MN_{suffix}_FILE: cannot read {path}: {exc.strerror}") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(var: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind.startswith("bool"):
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            return int(raw.strip())
        if kind.startswith("float"):
            return float(raw.strip())
    except ValueError:
        expected = kind.split(" ")[0]
        raise ConfigError(f"{var} must be a valid {expected} (got {raw!r})") from None
    return raw


@dataclass(frozen=True)
class SystemdEnv:
    """What systemd passes a ``Type=notify`` service: the notify socket and the watchdog period."""

    notify_socket: str | None
    watchdog_usec: int
    watchdog_pid: int | None


def systemd_env(environ: Mapping[str, str] | None = None) -> SystemdEnv:
    """``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (absent or malformed: disabled)."""
    env = os.environ if environ is None else environ

    def number(name: str) -> int:
        try:
            return max(int(env.get(name, "") or 0), 0)
        except ValueError:
            return 0

    return SystemdEnv(env.get("NOTIFY_SOCKET") or None, number("WATCHDOG_USEC"), number("WATCHDOG_PID") or None)


def extensions_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """``MNCORE_NO_EXTENSIONS=1`` forces the pure-Python ``_fast`` implementations."""
    env = os.environ if environ is None else environ
    return env.get("MNCORE_NO_EXTENSIONS", "").strip().lower() in _TRUE
