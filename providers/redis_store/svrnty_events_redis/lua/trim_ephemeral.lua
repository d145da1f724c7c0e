-- Trim an ephemeral stream (and its partition keys) to the lowest sequence some group of some
-- subscription has not settled.
-- KEYS: log meta subs; ARGV: sub-base (tag prefix of the subscriptions' keys)
local log, meta, subs = KEYS[1], KEYS[2], KEYS[3]
local low = tonumber(redis.call('HGET', meta, 'next') or '0')
local flat = redis.call('HGETALL', subs)
for i = 1, #flat, 2 do
  local sub, floor = flat[i], tonumber(flat[i + 1])
  local base = ARGV[1] .. sub
  local groups = redis.call('SMEMBERS', base .. ':groups')
  if #groups == 0 then
    if floor < low then low = floor end
  else
    for _, g in ipairs(groups) do
      local glog, gname = group_log(log, base .. ':parts', g), sub .. ':' .. g
      local last = last_delivered(glog, gname)
      if last then
        local f = group_floor(glog, gname, last)
        if f < low then low = f end
      end
    end
  end
end
if low > first_seq(log, meta) then remove_below(log, meta, low, {}) end
return low
