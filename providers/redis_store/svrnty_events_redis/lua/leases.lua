-- Leases of a delivery group (for modes that coordinate consumers across hosts): a hash of
-- key -> '<expiry ms, Redis clock>:<holder>'. Release, then take or renew, then list (and drop
-- the expired ones), in one step.
-- KEYS: leases; ARGV: n, then n triples (key holder ttl-ms) to take, then pairs (key holder) to
-- release. Returns key, holder, key, holder... of every unexpired lease.
local leases = KEYS[1]
local now = now_ms()
local n = tonumber(ARGV[1])
local function parse(v)
  local expiry, holder = string.match(v, '^(%d+):(.*)$')
  return tonumber(expiry), holder
end
for i = 2 + 3 * n, #ARGV - 1, 2 do
  local v = redis.call('HGET', leases, ARGV[i])
  if v then
    local _, holder = parse(v)
    if holder == ARGV[i + 1] then redis.call('HDEL', leases, ARGV[i]) end
  end
end
for j = 0, n - 1 do
  local b = 2 + 3 * j
  local key, holder = ARGV[b], ARGV[b + 1]
  local v = redis.call('HGET', leases, key)
  local take = true
  if v then
    local expiry, current = parse(v)
    take = expiry <= now or current == holder
  end
  if take then redis.call('HSET', leases, key, fmt(now + tonumber(ARGV[b + 2])) .. ':' .. holder) end
end
local out = {}
local all = redis.call('HGETALL', leases)
for k = 1, #all, 2 do
  local expiry, holder = parse(all[k + 1])
  if expiry <= now then
    redis.call('HDEL', leases, all[k])
  else
    out[#out + 1] = all[k]
    out[#out + 1] = holder
  end
end
return out
