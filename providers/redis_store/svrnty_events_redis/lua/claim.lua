-- Claim for a consumer, in one step: due timers, then entries waiting for redelivery (in
-- sequence order), then, when the claim has a filter on event types or a correlation id, new
-- entries past the cursor, each settled at once (XACK) if the filter rejects it. Without such a
-- filter every new entry matches, and the caller reads them with XREADGROUP itself (Redis
-- replies straight to the client, twice as fast as a read relayed through Lua).
-- ARGV 7..: max vt-ms key('' = main log, or a partition) read-here(0/1)
--           types('\n'-separated) has-types(0/1) correlation-id has-correlation(0/1) max-scan
-- Returns now, the earliest timer, the claimed {sequence, attempt, reason, fields}, and 1 if
-- the scan stopped with new entries left to look at.
local max, vt, want = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]

bind(want, nil)

local now = now_ms()
local rn = rname(consumer, vt)
local types, corr = nil, nil
if ARGV[12] == '1' then types = type_set(split(ARGV[11], '\n')) end
if ARGV[14] == '1' then corr = ARGV[13] end
local function matches(fields) return filter_matches(types, corr, fields) end

process_due(now)
local out = {}
if max > 0 then
  for _, m in ipairs(redis.call('ZRANGE', avail, 0, max - 1)) do
    redis.call('ZREM', avail, m)
    local owner, count = pending(glog, gname, id_of(m))
    local r = nil
    if owner then r = redis.call('XCLAIM', glog, gname, rn, 0, id_of(m), 'RETRYCOUNT', count + 1) end
    if r and #r > 0 and r[1] and matches(r[1][2]) then
      out[#out + 1] = {m, count + 1, redis.call('HGET', reasons, m), r[1][2]}
    else
      if r and #r > 0 then redis.call('XACK', glog, gname, id_of(m)) end
      redis.call('HDEL', reasons, m)
    end
  end
end
local more = 0
local room = max - #out
if ARGV[10] == '1' and room > 0 then
  local scan = tonumber(ARGV[15])
  while room > 0 do
    if scan <= 0 then more = 1 break end
    local n = math.min(room, scan)
    local r = redis.call('XREADGROUP', 'GROUP', gname, rn, 'COUNT', n, 'STREAMS', glog, '>')
    local entries = {}
    if r then entries = r[1][2] end
    local rejected = {}
    for _, e in ipairs(entries) do
      if matches(e[2]) then
        out[#out + 1] = {fmt(seq_of(e[1])), 1, false, e[2]}
        room = room - 1
      else
        rejected[#rejected + 1] = e[1]
      end
    end
    for i = 1, #rejected, 1000 do
      redis.call('XACK', glog, gname, unpack(rejected, i, math.min(i + 999, #rejected)))
    end
    scan = scan - #entries
    if #entries < n then break end
  end
end
if #out > 0 then redis.call('ZADD', timers, 'LT', now + vt, 'c:' .. rn) end
local t = redis.call('ZRANGE', timers, 0, 0, 'WITHSCORES')
return {now, t[2] or false, out, more}
