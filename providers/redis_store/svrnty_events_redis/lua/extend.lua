-- Move the visibility deadline of events the consumer holds to now + vt: each moves to the
-- consumer's PEL name for vt (idle time reset, delivery count kept: JUSTID), whose timer is
-- armed. ARGV 7..: vt-ms, then pairs (event id, known sequence|'').
-- Returns the positions (from 1) of the events the consumer does not hold.
local vt = tonumber(ARGV[7])
local rn = rname(consumer, vt)
local missing = {}
local n = 0
for i = 8, #ARGV - 1, 2 do
  local m = exists and seq_for(ARGV[i + 1], ARGV[i])
  if m and held_by(pending(glog, gname, id_of(m)), consumer) then
    redis.call('XCLAIM', glog, gname, rn, 0, id_of(m), 'JUSTID')
    n = n + 1
  else
    missing[#missing + 1] = (i - 6) / 2
  end
end
if n > 0 then redis.call('ZADD', timers, 'LT', now_ms() + vt, 'c:' .. rn) end
return missing
