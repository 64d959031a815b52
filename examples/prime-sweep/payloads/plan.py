"""Split [2, limit) into one range per worker and send each worker its range (emit_messages with `to`)."""

import json
import os

with open(os.environ["MIRROR_NEURON_INPUT_FILE"]) as f:
    body = json.load(f)
limit = int(body.get("limit", 100000))
workers = int(os.environ.get("PRIME_WORKERS", "40"))
step = -(-(limit - 2) // workers)
messages = []
for i in range(workers):
    start = 2 + i * step
    end = min(limit, start + step)
    messages.append({"to": f"worker_{i + 1:02d}", "type": "count_range", "body": {"start": start, "end": end}})
print(json.dumps({"emit_messages": messages, "events": [{"type": "sweep_planned", "payload": {"limit": limit, "workers": workers}}]}))
