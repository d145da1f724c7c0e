-- Forget a group and its state. When it was the subscription's last group, the subscription's
-- start moves to what the group had not settled (a new group resumes there).
if not exists then return 0 end
local last = last_delivered(glog, gname)
local f = nil
if last then f = group_floor(glog, gname, last) end
pcall(redis.call, 'XGROUP', 'DESTROY', glog, gname)
redis.call('DEL', avail, timers, reasons, expired)
-- acks of entries claimed before now take the checked path if the group is made again
redis.call('SET', deleted, now_ms(), 'PX', 86400000)
redis.call('SREM', groups, group)
redis.call('HDEL', parts, group)
redis.call('HDEL', filters, group)
if f and redis.call('SCARD', groups) == 0 then
  local cur = tonumber(redis.call('HGET', subs, sub) or '0')
  if f > cur then redis.call('HSET', subs, sub, fmt(f)) end
end
return 1
