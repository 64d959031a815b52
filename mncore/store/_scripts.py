"""Lua scripts of the Redis backend: every multi-key or compare-and-set operation, atomic on the server.

Each script's header lists its KEYS and ARGV. Key names come from :mod:`mncore.store._keys`.
"""

from __future__ import annotations

__all__ = ["DELETE_JOB", "RELEASE_LEASE", "RENEW_LEASE", "WRITE_BATCH"]

WRITE_BATCH = """
-- write_batch: apply one Batch all-or-nothing and publish the events it appends.
-- KEYS[1]    <ns>:jobs
-- then, per job record (J):       <ns>:job:<job_id>
-- then, per event group (E):      <ns>:job:<job_id>:events, <ns>:channel:events:<job_id>
-- then, per agent snapshot (A):   <ns>:job:<job_id>:agents, <ns>:job:<job_id>:agent:<agent_id>
-- ARGV[1..3] J, E, A
-- then, per job record:           job_id, record JSON
-- then, per event group:          seq of its first event, event count C, then C event JSONs
-- then, per agent snapshot:       agent_id, snapshot JSON
-- Events whose seq is below the stored length are already stored and are skipped (idempotent
-- retries). A group whose first seq is past the stored length fails the whole call, before any
-- write, with "MNGAP <group number> <stored length>".
-- Returns, per event group, the number of events appended (each one also PUBLISHed).
local nj, ne, na = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local groups = {}
local k, a = 2 + nj, 4 + 2 * nj
for g = 1, ne do
  local first, count = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local stored = redis.call('LLEN', KEYS[k])
  if first > stored then
    return redis.error_reply('MNGAP ' .. g .. ' ' .. stored)
  end
  groups[g] = {k, a + 2 + stored - first, a + 1 + count}
  k, a = k + 2, a + 2 + count
end
for j = 0, nj - 1 do
  redis.call('SET', KEYS[2 + j], ARGV[5 + 2 * j])
  redis.call('SADD', KEYS[1], ARGV[4 + 2 * j])
end
local appended = {}
for g = 1, ne do
  local key, from, to = groups[g][1], groups[g][2], groups[g][3]
  for i = from, to, 1000 do
    redis.call('RPUSH', KEYS[key], unpack(ARGV, i, math.min(i + 999, to)))
  end
  for i = from, to do
    redis.call('PUBLISH', KEYS[key + 1], ARGV[i])
  end
  appended[g] = math.max(to - from + 1, 0)
end
for s = 0, na - 1 do
  redis.call('SADD', KEYS[k + 2 * s], ARGV[a + 2 * s])
  redis.call('SET', KEYS[k + 2 * s + 1], ARGV[a + 2 * s + 1])
end
return appended
"""

DELETE_JOB = """
-- delete_job: remove every key of one job and its membership in the job set.
-- KEYS[1] <ns>:jobs   KEYS[2] <ns>:job:<job_id>   KEYS[3] <ns>:job:<job_id>:events
-- KEYS[4] <ns>:job:<job_id>:agents
-- ARGV[1] job_id      ARGV[2] "<ns>:job:<job_id>:agent:" (each agent id is appended to it)
-- Snapshot keys are derived from the agent set inside the script, so a snapshot written just
-- before cannot survive the delete (single-instance Redis: the keys need not share a slot).
-- Returns 1 when the job was in the job set, else 0.
local agents = redis.call('SMEMBERS', KEYS[4])
for i = 1, #agents do
  redis.call('DEL', ARGV[2] .. agents[i])
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return redis.call('SREM', KEYS[1], ARGV[1])
"""

RENEW_LEASE = """
-- renew_lease: extend a lease that the caller still holds.
-- KEYS[1] <ns>:lease:<name>
-- ARGV[1] owner   ARGV[2] new time to live in ms
-- Returns 1 when renewed, 0 when the lease is gone or held by another owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

RELEASE_LEASE = """
-- release_lease: drop a lease that the caller holds.
-- KEYS[1] <ns>:lease:<name>
-- ARGV[1] owner
-- Returns 1 when released, 0 when the lease is gone or held by another owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
