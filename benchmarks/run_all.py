"""Run every benchmark, each writing machine-readable JSON next to the others.

Usage: python benchmarks/run_all.py [--json OUT] [--quick] [--only NAME ...]
Each benchmark measures its subject and its baseline side by side in one run; ``OUT`` gets a
combined document with every benchmark's results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["chain", "store", "runners", "fanout", "mailbox", "slots", "rest", "grpc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", metavar="OUT", default=str(HERE / "results" / "all.json"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS)
    args = parser.parse_args()
    combined: dict[str, object] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "benchmarks": {}}
    failed = []
    for name in args.only or BENCHMARKS:
        out = HERE / "results" / f"{name}.json"
        command = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(out)]
        if args.quick:
            command.append("--quick")
        print(f"\n### {name}: {' '.join(command[1:])}", flush=True)
        if subprocess.call(command) != 0:
            failed.append(name)
            continue
        combined["benchmarks"][name] = json.loads(out.read_text())  # type: ignore[index]
    Path(args.json).write_text(json.dumps(combined, indent=2) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
