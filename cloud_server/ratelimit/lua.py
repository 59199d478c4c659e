"""Every Lua script the server runs in Redis: chat's admission, its GCRA rates and
concurrency slot in one script (`redis_store.py`), and login throttling's moving window and lockout
(`accounts/throttle.py`).

Times are milliseconds. Each script starts with the same clock block: ARGV[1] "now" is
empty in production (Redis's own clock, as instances' clocks may differ); tests pass one.
Numbers are stored with string.format: Lua's tostring would switch to exponent notation.
"""

from __future__ import annotations

_CLOCK = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
"""


def _clocked(body: str) -> str:
    """The script `body`, after the block that sets `now`."""
    return _CLOCK + body


# One chat admission, all or nothing, as `LocalLimiter.admit`. KEYS[1] the claim's sorted
# set of slot holders, KEYS[2..] one arrival time per rate; ARGV: now, limit (0: no
# claim), lease_ms, holder, then (emission_ms, burst) per rate ->
# {1} admitted / {0} every slot taken / {2, n, retry_after_ms} the n-th rate refused.
ADMIT_SCRIPT = _clocked("""
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.3f', now - lease))
  if redis.call('ZCARD', KEYS[1]) >= limit then return {0} end
end
local arrivals = {}
for i = 2, #KEYS do
  local emission = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + emission
  local allow_at = new_tat - emission * burst
  if allow_at > now then return {2, i - 1, string.format('%.3f', allow_at - now)} end
  arrivals[i] = new_tat
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', arrivals[i]), 'PX',
    math.ceil(arrivals[i] - now) + 1000)
end
if limit > 0 then
  redis.call('ZADD', KEYS[1], string.format('%.3f', now), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease))
end
return {1}
""")

# Moving window, as `InMemoryThrottle._window_hit`. KEYS[1] sorted set of event times;
# ARGV: now, unique member, then (count, window_ms) pairs -> '' allowed / wait_ms refused.
WINDOW_SCRIPT = _clocked("""
local longest = 0
for i = 3, #ARGV, 2 do
  local w = tonumber(ARGV[i + 1]); if w > longest then longest = w end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.3f', now - longest))
local wait = 0
for i = 3, #ARGV, 2 do
  local count = tonumber(ARGV[i]); local window = tonumber(ARGV[i + 1])
  local recent = redis.call('ZRANGEBYSCORE', KEYS[1],
    '(' .. string.format('%.3f', now - window), '+inf', 'WITHSCORES')
  local n = #recent / 2
  if n >= count then
    local w = tonumber(recent[(n - count) * 2 + 2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return string.format('%.3f', wait) end
redis.call('ZADD', KEYS[1], string.format('%.3f', now), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(longest))
return ''
""")

# One failed login. KEYS[1] account hash; ARGV: now, window_ms, free failures, max delay ms.
LOGIN_FAILED_SCRIPT = _clocked("""
local window = tonumber(ARGV[2]); local free = tonumber(ARGV[3])
local max_delay = tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'failures', 'last')
local failures = tonumber(h[1]) or 0
local last = tonumber(h[2]) or 0
if now - last > window then failures = 0 end
failures = failures + 1
local locked = 0
if failures - free >= 0 then locked = now + math.min(2 ^ (failures - free) * 1000, max_delay) end
redis.call('HSET', KEYS[1], 'failures', failures, 'last', string.format('%.3f', now),
  'locked', string.format('%.3f', locked))
redis.call('PEXPIRE', KEYS[1], math.ceil(window + max_delay))
return 1
""")

# KEYS[1] account hash; ARGV: now -> ms the account must still wait ('' for none).
LOGIN_LOCKED_SCRIPT = _clocked("""
local locked = tonumber(redis.call('HGET', KEYS[1], 'locked') or 0)
if locked > now then return string.format('%.3f', locked - now) end
return ''
""")
