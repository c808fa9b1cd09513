"""Every Lua script Reverie runs, as constants with KEYS/ARGV headers, plus ``Scripts`` to
register them once per client. Scripts read the clock with ``TIME`` so that every chat server,
dispatcher and worker agrees on due times regardless of their own clocks.

Not cluster-ready: ``SUBMIT`` touches the global due set and a thread's keys in one call.
Reverie targets one Redis primary (with replicas/Sentinel), like Celery's Redis broker.
"""

from __future__ import annotations

from typing import Any

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

SUBMIT = (
    """
-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=msgids KEYS[4]=due_ss KEYS[5]=dlq KEYS[6]=stats
-- ARGV[1]=after_ms ARGV[2]=max_wait_ms ARGV[3]=member ARGV[4]=profile ARGV[5]=msgid_ttl_s
-- ARGV[6..]=pairs of (message id or '', turn JSON)
-- Returns {accepted, duplicates, generation, due_ms or -1}
"""
    + _NOW
    + """
local accepted, dups = 0, 0
for i = 6, #ARGV, 2 do
  local mid = ARGV[i]
  if mid == '' or redis.call('SADD', KEYS[3], mid) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    accepted = accepted + 1
  else
    dups = dups + 1
  end
end
redis.call('EXPIRE', KEYS[3], ARGV[5])  -- a no-op when no id was given (no set)
if accepted == 0 then
  redis.call('HINCRBY', KEYS[6], 'duplicate_turns', dups)
  local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
  local due = redis.call('ZSCORE', KEYS[4], ARGV[3])
  return {0, dups, gen, due and math.floor(tonumber(due)) or -1}
end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('PERSIST', KEYS[1])
local first = tonumber(redis.call('HGET', KEYS[1], 'first_ms') or '0')
if first == 0 then first = now end
local due = now + tonumber(ARGV[1])
local cap = first + tonumber(ARGV[2])
if cap < due then due = cap end
redis.call('HSET', KEYS[1], 'first_ms', first, 'last_ms', now, 'profile', ARGV[4])
if redis.call('HEXISTS', KEYS[5], ARGV[3]) == 0 then
  redis.call('ZADD', KEYS[4], due, ARGV[3])
else
  due = -1
end
redis.call('HINCRBY', KEYS[6], 'enqueued_turns', accepted)
if dups > 0 then redis.call('HINCRBY', KEYS[6], 'duplicate_turns', dups) end
return {accepted, dups, gen, due}
"""
)

DUE_CANDIDATES = (
    """
-- KEYS[1]=due_ss  ARGV[1]=limit
-- Returns {next_due_ms or -1, member...} for members due now (read only; CLAIM decides)
"""
    + _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nxt = -1
if #head > 0 then nxt = math.floor(tonumber(head[2])) - now end
table.insert(due, 1, nxt)
return due
"""
)

CLAIM = (
    """
-- KEYS[1]=due_ss KEYS[2]=inflight_ss KEYS[3]=thread KEYS[4]=stats
-- ARGV[1]=member ARGV[2]=inflight_ms
-- Atomically moves a due thread to in-flight. Returns {generation, lag_ms}; generation 0 = not claimed.
"""
    + _NOW
    + """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > now then return {0, 0} end
redis.call('ZREM', KEYS[1], ARGV[1])
local gen = tonumber(redis.call('HGET', KEYS[3], 'gen') or '0')
if gen == 0 then return {0, 0} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[3], 'dispatched_gen', gen)
redis.call('HINCRBY', KEYS[4], 'dispatched', 1)
return {gen, now - math.floor(tonumber(s))}
"""
)

REQUEUE_EXPIRED = (
    """
-- KEYS[1]=inflight_ss KEYS[2]=due_ss KEYS[3]=stats  ARGV[1]=limit
-- Claimed threads whose reflection never finished (dispatcher or worker died) become due again.
"""
    + _NOW
    + """
local lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(lost) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], now, m)
end
if #lost > 0 then redis.call('HINCRBY', KEYS[3], 'requeued', #lost) end
return #lost
"""
)

LEASE_ACQUIRE = """
-- KEYS[1]=lease KEYS[2]=fence  ARGV[1]=ttl_ms
-- Returns a fencing token (> 0), or 0 when another reflection of this user holds the lease.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""

LEASE_RENEW = """
-- KEYS[1]=lease  ARGV[1]=token ARGV[2]=ttl_ms   Returns 1 if still ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

SNAPSHOT = """
-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=journal  ARGV[1]=max_turns
-- Returns {generation, profile, journal or '', turn JSON...}
local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
local profile = redis.call('HGET', KEYS[1], 'profile') or 'default'
local journal = redis.call('GET', KEYS[3]) or ''
local turns = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
table.insert(turns, 1, journal)
table.insert(turns, 1, profile)
table.insert(turns, 1, gen)
return turns
"""

PREPARE = """
-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=journal  ARGV[1]=token ARGV[2]=generation
-- ARGV[3]=policy ('rollback'|'finish') ARGV[4]=commit plan JSON
-- The commit point: once the plan is journaled, the reflection's writes will happen (replayed
-- after a crash if needed). Returns 'ok', 'lost_lease', 'superseded' or 'forgotten'.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost_lease' end
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return 'forgotten' end
if ARGV[3] == 'rollback' and gen ~= ARGV[2] then return 'superseded' end
redis.call('SET', KEYS[3], ARGV[4])
return 'ok'
"""

FINALIZE = (
    """
-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=lease KEYS[4]=journal KEYS[5]=inflight_ss KEYS[6]=stats
-- KEYS[7]=history (of the user) KEYS[8]=changed_ss
-- ARGV[1]=token ARGV[2]=turn_count ARGV[3]=member ARGV[4]=generation ARGV[5]=idle_ttl_s
-- ARGV[6]=user_id ARGV[7]=history_ttl_s ARGV[8]=history_max ARGV[9..]=history entry JSON
-- After the plan reached Qdrant: trim exactly the consumed turns, drop the journal, free the lease;
-- in the same step append the history entries and mark the user changed (once per commit).
-- Returns 'ok', 'lost_lease' or 'no_journal'.
"""
    + _NOW
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lost_lease' end
if redis.call('EXISTS', KEYS[4]) == 0 then return 'no_journal' end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
redis.call('DEL', KEYS[4])
if #ARGV >= 9 then
  for i = 9, #ARGV do redis.call('RPUSH', KEYS[7], ARGV[i]) end
  redis.call('LTRIM', KEYS[7], -tonumber(ARGV[8]), -1)
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[7]))
  redis.call('ZADD', KEYS[8], now, ARGV[6])
end
redis.call('HSET', KEYS[1], 'committed_gen', ARGV[4], 'attempts', 0)
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('HDEL', KEYS[1], 'first_ms')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
else
  redis.call('HSET', KEYS[1], 'first_ms', now)
end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[4]) then redis.call('ZREM', KEYS[5], ARGV[3]) end
redis.call('DEL', KEYS[3])
redis.call('HINCRBY', KEYS[6], 'committed', 1)
redis.call('HINCRBY', KEYS[6], 'reflected_turns', tonumber(ARGV[2]))
return 'ok'
"""
)

RELEASE = """
-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=inflight_ss KEYS[4]=stats
-- ARGV[1]=token ARGV[2]=member ARGV[3]=generation ARGV[4]=stat name
-- End a reflection without committing (superseded, rolled back, nothing to do).
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[2]) end
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
return 1
"""

RESCHEDULE = (
    """
-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=inflight_ss KEYS[4]=due_ss KEYS[5]=dlq KEYS[6]=stats
-- ARGV[1]=token ('' if none) ARGV[2]=member ARGV[3]=generation ARGV[4]=delay_ms
-- ARGV[5]=count_failure (0|1) ARGV[6]=max_attempts ARGV[7]=dead letter JSON
-- Put the thread back in the due set (lease busy, or a failure with backoff); after
-- max_attempts failures move it to the dead-letter hash instead. Turns stay buffered.
-- Returns {attempts, dead_lettered 0|1}.
"""
    + _NOW
    + """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if ARGV[5] == '1' then
  attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HINCRBY', KEYS[6], 'failed', 1)
  if attempts >= tonumber(ARGV[6]) then
    redis.call('ZREM', KEYS[4], ARGV[2])
    redis.call('HSET', KEYS[5], ARGV[2], ARGV[7])
    redis.call('HINCRBY', KEYS[6], 'dead_lettered', 1)
    return {attempts, 1}
  end
else
  redis.call('HINCRBY', KEYS[6], 'deferred', 1)
end
redis.call('ZADD', KEYS[4], 'NX', now + tonumber(ARGV[4]), ARGV[2])
return {attempts, 0}
"""
)

REPLAY_DEAD = (
    """
-- KEYS[1]=dlq KEYS[2]=thread KEYS[3]=due_ss KEYS[4]=buffer  ARGV[1]=member
-- Returns 1 if the dead letter was replayed (made due now), 0 if there was none.
"""
    + _NOW
    + """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('LLEN', KEYS[4]) == 0 then return 1 end
redis.call('HSET', KEYS[2], 'attempts', 0)
redis.call('ZADD', KEYS[3], now, ARGV[1])
return 1
"""
)

RECORD_CHANGES = (
    """
-- KEYS[1]=history (of the user) KEYS[2]=changed_ss
-- ARGV[1]=user_id ARGV[2]=history_ttl_s ARGV[3]=history_max ARGV[4]=mark_changed (0|1)
-- ARGV[5..]=history entry JSON
-- Memory writes outside a reflection (agent tools, consolidation): append their history and,
-- unless they come from consolidation itself, mark the user changed. Returns entries appended.
"""
    + _NOW
    + """
for i = 5, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if #ARGV >= 5 then
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], now, ARGV[1]) end
return #ARGV - 4
"""
)

CLEAR_CHANGED = """
-- KEYS[1]=changed_ss  ARGV[1]=user_id ARGV[2]=score seen when consolidation started
-- Unmark a consolidated user unless it changed again meanwhile. Returns 1 if removed.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

FLUSH_DUE = (
    """
-- KEYS[1]=due_ss KEYS[2]=stats  ARGV[1]=limit ARGV[2]=user_id ('' for every user)
-- Make pending threads due now regardless of debounce (batch "flush"). Returns how many moved.
"""
    + _NOW
    + """
local pending = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, m in ipairs(pending) do
  if ARGV[2] == '' or string.sub(m, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
    redis.call('ZADD', KEYS[1], 'XX', now, m)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('HINCRBY', KEYS[2], 'flushed', moved) end
return moved
"""
)

LEASE_RELEASE = """
-- KEYS[1]=lease  ARGV[1]=token   Free the lease if still ours. Returns 1 if released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

PROMPT_SET = """
-- KEYS[1]=prompt KEYS[2]=prompt history  ARGV[1]=expected version ('' = any) ARGV[2]=record JSON
-- ARGV[3]=history_max
-- Store a new prompt version; the previous one goes to the history list. Compare-and-set on the
-- version so two optimizers cannot silently overwrite each other. Returns the new version or -1.
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= cur then return -1 end
local prev = redis.call('HGET', KEYS[1], 'json')
if prev then
  redis.call('RPUSH', KEYS[2], prev)
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
end
local v = cur + 1
redis.call('HSET', KEYS[1], 'version', v, 'json', ARGV[2])
return v
"""

ALL = {
    "submit": SUBMIT,
    "due_candidates": DUE_CANDIDATES,
    "claim": CLAIM,
    "requeue_expired": REQUEUE_EXPIRED,
    "lease_acquire": LEASE_ACQUIRE,
    "lease_renew": LEASE_RENEW,
    "snapshot": SNAPSHOT,
    "prepare": PREPARE,
    "finalize": FINALIZE,
    "release": RELEASE,
    "reschedule": RESCHEDULE,
    "replay_dead": REPLAY_DEAD,
    "record_changes": RECORD_CHANGES,
    "clear_changed": CLEAR_CHANGED,
    "flush_due": FLUSH_DUE,
    "lease_release": LEASE_RELEASE,
    "prompt_set": PROMPT_SET,
}


class Scripts:
    """The scripts registered on one client (sync or asyncio); ``EVALSHA`` with reload on NOSCRIPT."""

    def __init__(self, client: Any) -> None:
        for name, source in ALL.items():
            setattr(self, name, client.register_script(source))

    submit: Any
    due_candidates: Any
    claim: Any
    requeue_expired: Any
    lease_acquire: Any
    lease_renew: Any
    snapshot: Any
    prepare: Any
    finalize: Any
    release: Any
    reschedule: Any
    replay_dead: Any
    record_changes: Any
    clear_changed: Any
    flush_due: Any
    lease_release: Any
    prompt_set: Any
