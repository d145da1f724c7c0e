-- Record delivered (and read) times of events for a consumer: field 'consumer\nevent id',
-- value 'delivered_ms:read_ms'.
-- KEYS: receipts; ARGV: consumer read(0/1) event-ids...
local now = fmt(now_ms())
for i = 3, #ARGV do
  local field = ARGV[1] .. '\n' .. ARGV[i]
  local v = redis.call('HGET', KEYS[1], field)
  if not v then v = now .. ':' end
  if ARGV[2] == '1' and string.sub(v, -1) == ':' then v = v .. now end
  redis.call('HSET', KEYS[1], field, v)
end
return 1
