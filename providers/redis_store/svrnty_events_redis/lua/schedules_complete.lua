-- Drop fired schedules (see schedules.py), each only if it still appends the event it was
-- claimed with (a schedule replaced since is kept).
-- KEYS: due, body, lease, eid (hash id -> event id); ARGV: pairs of schedule id, event id.
for i = 1, #ARGV - 1, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
return 0
