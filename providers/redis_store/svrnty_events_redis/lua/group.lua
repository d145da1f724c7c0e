-- Prepended (after common.lua) to the scripts of one delivery group. Every such script gets the
-- same keys and the same first arguments.
local log, meta, groups, subs, parts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local avail, timers, reasons, expired, deleted = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local filters = KEYS[11]
local sub, group, gname, consumer, eids, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local exists = redis.call('SISMEMBER', groups, group) == 1
local glog = group_log(log, parts, group)

-- Put the group's Redis group on the key its claims read ('' = the main log, or a partition),
-- created with its cursor before `start` if missing. An existing group that is on another key
-- (its claims read a partition from now on, or no longer do: a change of mode or partitions)
-- moves there, with its cursor before anything it had not settled.
local function bind(want, start)
  if exists then
    if (redis.call('HGET', parts, group) or '') == want then return end
    local last = last_delivered(glog, gname)
    start = nil
    if last then start = group_floor(glog, gname, last) end
    pcall(redis.call, 'XGROUP', 'DESTROY', glog, gname)
    redis.call('DEL', avail, timers, reasons)
    redis.call('SET', deleted, now_ms(), 'PX', 86400000)  -- earlier claims' acks are checked
  end
  if want == '' then redis.call('HDEL', parts, group) else redis.call('HSET', parts, group, want) end
  glog = partition_key(log, want)
  create_group(glog, log, meta, groups, subs, sub, group, gname, start)
  exists = true
end

-- the sequence of an event: as the caller knows it, else from its dedup key
local function seq_for(known, event_id)
  if known ~= '' then return known end
  return redis.call('GET', eids .. event_id)
end

-- a consumer's entries in flight longer than the visibility timeout go back for redelivery;
-- its timer is set again for the earliest deadline of those it still holds
local function expire_consumer(rn, now, vt)
  local p = redis.call('XPENDING', glog, gname, '-', '+', 1000000, rn)
  local oldest = nil
  for _, x in ipairs(p) do
    local idle = tonumber(x[3])
    if idle >= vt then
      local m = fmt(seq_of(x[1]))
      mark_lost(expired, base_of(rn), now)
      redis.call('XCLAIM', glog, gname, PARKED, 0, x[1], 'JUSTID')
      redis.call('HSETNX', reasons, m, 'visibility timeout expired')
      redis.call('ZADD', avail, m, m)
    elseif not oldest or idle > oldest then
      oldest = idle
    end
  end
  if oldest then redis.call('ZADD', timers, now + vt - oldest, 'c:' .. rn) end
end

-- timers: 'c:<consumer>@<vt>' scored by the earliest visibility deadline of what the consumer
-- holds under that name, '<sequence>' by the due time of a delayed redelivery
local function process_due(now)
  local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    redis.call('ZREM', timers, m)
    local rn, vt = string.match(m, '^c:(.*@(%d+))$')
    if rn then
      expire_consumer(rn, now, tonumber(vt))
    else
      local owner = pending(glog, gname, id_of(m))
      if owner and owner ~= DEAD then
        if owner ~= PARKED then  -- an in-flight entry with a deadline of its own
          mark_lost(expired, base_of(owner), now)
          redis.call('XCLAIM', glog, gname, PARKED, 0, id_of(m), 'JUSTID')
          redis.call('HSETNX', reasons, m, 'visibility timeout expired')
        end
        redis.call('ZADD', avail, m, m)
      elseif not owner then
        redis.call('HDEL', reasons, m)
      end
    end
  end
end
