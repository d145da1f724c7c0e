-- Claim due schedules for a host (see schedules.py): each due schedule whose lease is free,
-- expired or the holder's own is leased to the holder until now + lease, earliest first.
-- KEYS: due (zset id -> due), body (hash id -> schedule), lease (hash id -> 'until:holder')
-- ARGV: holder, now (seconds, the host's clock), max count, lease seconds, scan bound.
-- Returns the bodies claimed.
local holder, now, max_count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease_until = now + tonumber(ARGV[4])
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[5]))
local out = {}
for _, id in ipairs(ids) do
  if #out >= max_count then break end
  local v = redis.call('HGET', KEYS[3], id)
  local take = true
  if v then
    local expiry, current = string.match(v, '^([^:]+):(.*)$')
    take = tonumber(expiry) <= now or current == holder
  end
  if take then
    local body = redis.call('HGET', KEYS[2], id)
    if body then
      redis.call('HSET', KEYS[3], id, string.format("%.6f", lease_until) .. ':' .. holder)
      out[#out + 1] = body
    end
  end
end
return out
