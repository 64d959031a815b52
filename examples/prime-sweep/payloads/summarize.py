"""Sum the collected counts and complete the job with a summary."""

import json
import os

with open(os.environ.get("MN_INPUT_FILE") or os.environ["MIRROR_NEURON_INPUT_FILE"]) as f:
    collected = json.load(f)
ranges = sorted(collected["messages"], key=lambda m: m["start"])
total = sum(m["count"] for m in ranges)
covered = ranges[-1]["end"] if ranges else 0
summary = {"primes_below": covered, "prime_count": total, "workers": collected["count"]}
print(json.dumps({"complete_job": summary, "events": [{"type": "sweep_summarized", "payload": summary}]}))
