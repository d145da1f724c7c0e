-- Move an event held by the consumer, or waiting for redelivery, to the dead-letter queue: the
-- entry goes to svrnty:dead in the PEL (so a replay can return it), a record with a copy of
-- the envelope to the dead-letter stream.
-- KEYS 12, 13: dead dead-index; ARGV 7..: event-id known-sequence|'' reason attempts error has-error
local dead, index = KEYS[12], KEYS[13]
if not exists then return 0 end
local m = seq_for(ARGV[8], ARGV[7])
if not m then return 0 end
local owner = pending(glog, gname, id_of(m))
-- held by this consumer, or waiting for redelivery: not another consumer's in-flight entry
if not owner or owner == DEAD or (owner ~= PARKED and not held_by(owner, consumer)) then
  return 0
end
redis.call('ZREM', timers, m)
redis.call('ZREM', avail, m)
redis.call('HDEL', reasons, m)
local e = redis.call('XRANGE', glog, id_of(m), id_of(m))
if #e == 0 then
  redis.call('XACK', glog, gname, id_of(m))
  return 0
end
redis.call('XCLAIM', glog, gname, DEAD, 0, id_of(m), 'JUSTID')
add_dead_letter(dead, index, m, ARGV[7], group, consumer, ARGV[9], ARGV[10],
                ARGV[12] == '1' and ARGV[11] or nil, e[1][2])
return 1
