-- One token bucket per key, decided atomically inside Redis on Redis's own clock, so every
-- node charges the same bucket the same way. The same arithmetic as rampart-core's
-- in-memory `RateLimiter`: `capacity` per minute, bursts up to `capacity`.
-- KEYS[1]: the bucket. ARGV[1]: capacity (requests per minute).
-- Returns {allowed, remaining, full_at_ms, retry_after_ms, audit}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local per_ms = capacity / 60000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'audited')
local tokens = tonumber(b[1]) or capacity
local updated = tonumber(b[2]) or now
local audited = tonumber(b[3])
tokens = math.min(capacity, tokens + math.max(0, now - updated) * per_ms)
if now > updated then updated = now end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
-- A refusal is audited at most once a minute per key, however many nodes see the flood.
local audit = 0
if allowed == 0 and (audited == nil or now - audited >= 60000) then
  audit = 1
  audited = now
end
local until_full = math.ceil((capacity - tokens) / per_ms)
local retry = 0
if allowed == 0 then retry = math.ceil((1 - tokens) / per_ms) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(updated))
if audited then redis.call('HSET', KEYS[1], 'audited', tostring(audited)) end
-- A bucket left alone is full again after `until_full`; a full bucket is the same as no
-- bucket, so it may go then (kept a minute at least, for the audit window).
redis.call('PEXPIRE', KEYS[1], math.max(until_full, 60000))
return {allowed, math.floor(tokens), now + until_full, retry, audit}
