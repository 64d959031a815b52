"""The store's names in one place: Redis keys (runtime-lifecycle.md §10.1), document keys, lease names, TTLs.

Every Redis key starts with ``<ns>:`` (``MN_REDIS_NAMESPACE``, default ``mirror_neuron``)::

    <ns>:jobs                            set      known job ids
    <ns>:job:<job_id>                    string   JSON job record
    <ns>:job:<job_id>:events             list     JSON events, RPUSH, oldest first
    <ns>:job:<job_id>:agents             set      agent ids
    <ns>:job:<job_id>:agent:<agent_id>   string   JSON agent snapshot
    <ns>:channel:events:<job_id>         pub/sub  every appended event, same JSON
    <ns>:lease:<name>                    string   lease owner, PX expiry
    <ns>:nodes                           set      node names
    <ns>:node:<name>:state               string   JSON node state, TTL 15 s
    <ns>:resource:limits                 string   JSON {cpu, gpu, memory, disk}

Documents (``Store.put_doc``) are addressed by the key suffix after ``<ns>:``; the SQLite backend
uses the same suffixes as its document keys, so both backends hold the same documents under the
same names.
"""

from __future__ import annotations

__all__ = [
    "LEADER_LEASE",
    "NODE_STATE_REFRESH_MS",
    "NODE_STATE_TTL_MS",
    "RESOURCE_LIMITS_DOC",
    "Keys",
    "check_doc_key",
    "job_lease",
    "node_state_doc",
]

# ---- TTLs ------------------------------------------------------------------------------------

NODE_STATE_TTL_MS = 15_000
"""``node:<name>:state`` expires 15 s after its last refresh."""

NODE_STATE_REFRESH_MS = 3_000
"""Nodes refresh their state document every 3 s."""

# ---- lease names and document keys -----------------------------------------------------------

LEADER_LEASE = "cluster:leader"
RESOURCE_LIMITS_DOC = "resource:limits"


def job_lease(job_id: str) -> str:
    """Lease name of a job's ownership: ``job:<job_id>``."""
    return f"job:{job_id}"


def node_state_doc(name: str) -> str:
    """Document key of a node's state: ``node:<name>:state``."""
    return f"node:{name}:state"


# Suffixes owned by the job/lease/channel/node-set layout: a document must not shadow them.
_RESERVED_EXACT = ("jobs", "nodes")
_RESERVED_PREFIXES = ("job:", "lease:", "channel:")


def check_doc_key(key: str) -> str:
    """Return ``key`` if it may name a document; raise ``ValueError`` if it collides with the job layout."""
    if not key or key in _RESERVED_EXACT or key.startswith(_RESERVED_PREFIXES):
        raise ValueError(
            f"document key {key!r} is empty or collides with the job/lease/node layout; "
            "use a key such as 'resource:limits' or 'node:<name>:state'"
        )
    return key


# ---- Redis keys ------------------------------------------------------------------------------


class Keys:
    """Builds the Redis keys of one namespace (prefixes precomputed: these are on the write path)."""

    __slots__ = ("_channel", "_job", "_lease", "ns")

    def __init__(self, namespace: str) -> None:
        if not namespace:
            raise ValueError("Redis namespace must not be empty (MN_REDIS_NAMESPACE)")
        self.ns = namespace
        self._job = f"{namespace}:job:"
        self._channel = f"{namespace}:channel:events:"
        self._lease = f"{namespace}:lease:"

    def jobs(self) -> str:
        return f"{self.ns}:jobs"

    def job(self, job_id: str) -> str:
        return self._job + job_id

    def events(self, job_id: str) -> str:
        return f"{self._job}{job_id}:events"

    def agents(self, job_id: str) -> str:
        return f"{self._job}{job_id}:agents"

    def agent_prefix(self, job_id: str) -> str:
        """``<ns>:job:<job_id>:agent:``; the delete script appends each agent id to it."""
        return f"{self._job}{job_id}:agent:"

    def agent(self, job_id: str, agent_id: str) -> str:
        return f"{self._job}{job_id}:agent:{agent_id}"

    def channel(self, job_id: str) -> str:
        return self._channel + job_id

    def channel_job_id(self, channel: str) -> str | None:
        """The job id of an event channel name, or ``None`` for another channel."""
        return channel[len(self._channel) :] if channel.startswith(self._channel) else None

    def lease(self, name: str) -> str:
        return self._lease + name

    def nodes(self) -> str:
        return f"{self.ns}:nodes"

    def doc(self, key: str) -> str:
        return f"{self.ns}:{key}"
