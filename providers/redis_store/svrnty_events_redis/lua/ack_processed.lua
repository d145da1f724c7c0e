-- Record an event as processed and settle it, in one step (Delivery.process_once). The mark is
-- recorded even when the consumer no longer holds the event: the effect was applied.
-- KEYS 12: processed; ARGV 7..: event-id known-sequence|'' processed-key
-- Returns 1 if the ack settled an event the consumer held.
redis.call('SADD', KEYS[12], ARGV[9])
if not exists then return 0 end
local m = seq_for(ARGV[8], ARGV[7])
if not m or not held_by(pending(glog, gname, id_of(m)), consumer) then return 0 end
redis.call('XACK', glog, gname, id_of(m))
redis.call('HDEL', reasons, m)
return 1
