"""Tiny shared harness: repeat measurements, report medians and ratios, write machine-readable JSON.

Every benchmark measures its subject and its baseline side by side in the same process run, and
reports the median over repeats plus the ratio subject/baseline (machines here are shared and
noisy, so ratios are the number to read).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="OUT", help="write results as JSON to OUT")
    p.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median reported)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    return p


def median_of(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


class Report:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[dict[str, Any]] = []

    def add(self, metric: str, samples: list[float], unit: str, **extra: Any) -> float:
        med = median_of(samples)
        self.rows.append({"metric": metric, "median": med, "unit": unit, "samples": samples, **extra})
        return med

    def ratio(self, metric: str, numerator: float, denominator: float, target: str | None = None) -> float:
        value = numerator / denominator if denominator else float("nan")
        self.rows.append({"metric": metric, "ratio": value, "target": target})
        return value

    def print(self) -> None:
        print(f"\n== {self.name} ==")
        for row in self.rows:
            if "ratio" in row:
                target = f"   (target {row['target']})" if row.get("target") else ""
                print(f"  {row['metric']:<58} {row['ratio']:>12.3f}x{target}")
            else:
                print(f"  {row['metric']:<58} {row['median']:>12,.1f} {row['unit']}")

    def write(self, path: str | None) -> None:
        self.print()
        if not path:
            return
        doc = {
            "benchmark": self.name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "extensions": os.environ.get("MNCORE_NO_EXTENSIONS") not in ("1", "true"),
            "results": self.rows,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def repeat(fn: Callable[[], float], repeats: int) -> list[float]:
    return [fn() for _ in range(repeats)]
