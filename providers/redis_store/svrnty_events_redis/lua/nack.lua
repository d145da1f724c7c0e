-- Return a held event for redelivery, now or after a delay (a timer).
-- ARGV 7..: event-id known-sequence|'' delay-ms reason
if not exists then return 0 end
local m = seq_for(ARGV[8], ARGV[7])
if not m or not held_by(pending(glog, gname, id_of(m)), consumer) then return 0 end
redis.call('XCLAIM', glog, gname, PARKED, 0, id_of(m), 'JUSTID')
if ARGV[10] ~= '' then redis.call('HSET', reasons, m, ARGV[10]) end
local delay = tonumber(ARGV[9])
if delay > 0 then
  redis.call('ZADD', timers, now_ms() + delay, m)
else
  redis.call('ZADD', avail, m, m)
end
redis.call('PUBLISH', channel, '')
return 1
