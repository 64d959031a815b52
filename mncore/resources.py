"""Host resources: psutil / NVML totals, resource limits and the resource report (operations.md §3).

NVML is optional: without an NVIDIA driver the node reports zero GPUs. Values in GB are
``bytes / 1024**3`` rounded to 2 decimals.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
from typing import Any

import psutil

from .errors import ValidationError

logger = logging.getLogger(__name__)

__all__ = ["LIMIT_KEYS", "LIMIT_VALUES", "ResourceMonitor", "gpus", "validate_limits"]

LIMIT_KEYS = ("cpu", "gpu", "memory", "disk")
LIMIT_VALUES = (25, 50, 75, 100)
DEFAULT_LIMITS = dict.fromkeys(LIMIT_KEYS, 100)
_GB = 1024.0**3
_nvml_lock = threading.Lock()
_nvml_state: dict[str, Any] = {"init": None}


def _nvml() -> Any:
    """The pynvml module once initialised, or None when no NVIDIA driver answers."""
    with _nvml_lock:
        if _nvml_state["init"] is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_state["init"] = pynvml
            except Exception as exc:  # no library, no driver, no device
                logger.debug("NVML unavailable: %s", exc)
                _nvml_state["init"] = False
        return _nvml_state["init"] or None


def gpus() -> list[dict[str, Any]]:
    """Per-GPU ``{index, name, memory_total_mb, memory_free_mb, driver}``; ``[]`` without a driver."""
    nvml = _nvml()
    if nvml is None:
        return []
    out = []
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "memory_total_mb": int(mem.total // (1024 * 1024)),
                    "memory_free_mb": int(mem.free // (1024 * 1024)),
                    "driver": driver,
                }
            )
    except Exception as exc:
        logger.warning("NVML query failed: %s", exc)
        return []
    return out


def validate_limits(body: Any) -> dict[str, int]:
    """Validate a limits update (api.md §3.4); values 25/50/75/100 as ints or numeric strings."""
    if not isinstance(body, dict):
        raise ValidationError("at least one of cpu, gpu, memory, or disk is required")
    body = {k: v for k, v in body.items() if k != "version"}
    if not body:
        raise ValidationError("at least one of cpu, gpu, memory, or disk is required")
    out: dict[str, int] = {}
    for key, value in body.items():
        if key not in LIMIT_KEYS:
            raise ValidationError("resource type must be one of cpu, gpu, memory, or disk")
        number: Any = value
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if isinstance(number, bool) or number not in LIMIT_VALUES:
            raise ValidationError(f"{key} must be one of 25, 50, 75, 100")
        out[key] = int(number)
    return out


def _gb(value: float) -> float:
    return round(value / _GB, 2)


class ResourceMonitor:
    """Measures this node and builds the resource report with the current limits."""

    def __init__(self, node_name: str, data_dir: str, runtime_drivers: list[str] | None = None) -> None:
        self.node_name = node_name
        self.data_dir = data_dir
        self.runtime_drivers = runtime_drivers or []
        self.limits: dict[str, int] = dict(DEFAULT_LIMITS)

    def hardware(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        return {
            "cpu": {"logical_processors": psutil.cpu_count(logical=True) or 1, "architecture": platform.machine()},
            "memory": {"total_bytes": mem.total, "total_mb": mem.total // (1024 * 1024)},
            "gpu": gpus(),
        }

    def totals(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        mem = psutil.virtual_memory()
        path = self.data_dir if os.path.exists(self.data_dir) else "/"
        disk = psutil.disk_usage(path)
        gpu_list = gpus()
        total_mb = sum(g["memory_total_mb"] for g in gpu_list)
        free_mb = sum(g["memory_free_mb"] for g in gpu_list)
        totals = {
            "cpu_cores": psutil.cpu_count(logical=True) or 1,
            "gpu_count": len(gpu_list),
            "gpu_memory_total_mb": total_mb,
            "gpu_memory_free_mb": free_mb,
            "gpu_memory_total_gb": round(total_mb / 1024.0, 2),
            "gpu_memory_free_gb": round(free_mb / 1024.0, 2),
            "memory_gb": _gb(mem.total),
            "memory_total_gb": _gb(mem.total),
            "memory_available_gb": _gb(mem.available),
            "disk_gb": _gb(disk.total),
            "disk_available_gb": _gb(disk.free),
        }
        return totals, gpu_list

    def usable(self, combined: dict[str, Any]) -> dict[str, Any]:
        lim = self.limits
        scale = {
            "cpu_cores": lim["cpu"],
            "gpu_count": lim["gpu"],
            "gpu_memory_total_mb": lim["gpu"],
            "gpu_memory_free_mb": lim["gpu"],
            "gpu_memory_total_gb": lim["gpu"],
            "gpu_memory_free_gb": lim["gpu"],
            "memory_gb": lim["memory"],
            "memory_total_gb": lim["memory"],
            "memory_available_gb": lim["memory"],
            "disk_gb": lim["disk"],
            "disk_available_gb": lim["disk"],
        }
        out: dict[str, Any] = {}
        for key, value in combined.items():
            scaled = value * scale[key] / 100.0
            out[key] = int(scaled) if isinstance(value, int) else round(scaled, 2)
        return out

    def report(self) -> dict[str, Any]:
        totals, gpu_list = self.totals()
        hostname = socket.gethostname()
        node = {
            "name": self.node_name,
            "display_name": hostname,
            "hostname": hostname,
            "platform": {
                "family": "unix",
                "os": "linux",
                "node": self.node_name,
                "hostname": hostname,
                "display_name": hostname,
            },
            "self": True,
            "status": "healthy",
            "scheduling_eligible": True,
            "drain": None,
            "cpu_cores": totals["cpu_cores"],
            "gpu_count": totals["gpu_count"],
            "memory_gb": totals["memory_gb"],
            "memory_total_gb": totals["memory_total_gb"],
            "memory_available_gb": totals["memory_available_gb"],
            "disk_gb": totals["disk_gb"],
            "disk_available_gb": totals["disk_available_gb"],
            "gpu": gpu_list,
            "devices": [
                {
                    "kind": "gpu",
                    "vendor": "nvidia",
                    "id": str(g["index"]),
                    "name": g["name"],
                    "memory_mb": g["memory_total_mb"],
                }
                for g in gpu_list
            ],
            "gpu_memory_total_mb": totals["gpu_memory_total_mb"],
            "gpu_memory_free_mb": totals["gpu_memory_free_mb"],
            "drivers": ["cuda"] if _nvml() is not None else [],
            "runtime_drivers": list(self.runtime_drivers),
            "host_paths": [],
        }
        return {
            "mode": "single_node",
            "node_count": 1,
            "limits": dict(self.limits),
            "totals": totals,
            "combined": dict(totals),
            "usable": self.usable(totals),
            "nodes": [node],
        }
