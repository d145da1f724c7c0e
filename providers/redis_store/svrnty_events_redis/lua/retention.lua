-- Retention (prepended to append.lua): the entries below sequence `base` leave the stream.
-- Policy dead_letter: what a group had not settled goes to its subscription's dead-letter queue
-- (reason 'retention'): events it never read (that its filter matches) and events waiting for
-- redelivery; events a consumer holds in flight stay in the log until settled. Policy
-- keep_unsettled: `base` stops at the lowest entry some group has not settled.

-- call fn(sub, sub-base, group, group's key, Redis group name) for every group of the stream
local function each_group(log, subs, sub_base, fn)
  local flat = redis.call('HGETALL', subs)
  for i = 1, #flat, 2 do
    local sub = flat[i]
    local base = sub_base .. sub
    for _, g in ipairs(redis.call('SMEMBERS', base .. ':groups')) do
      fn(sub, base, g, group_log(log, base .. ':parts', g), sub .. ':' .. g)
    end
  end
end

local function filter_of(base, g)
  local v = redis.call('HGET', base .. ':filters', g)
  if not v then return nil, nil end
  local f = cjson.decode(v)
  local types = nil
  if type(f['t']) == 'table' then types = type_set(f['t']) end
  if type(f['c']) == 'string' then return types, f['c'] end
  return types, nil
end

-- entries of key from sequence `from` up to (not including) `to`, page by page
local function each_entry(key, from, to, fn)
  while from < to do
    local e = redis.call('XRANGE', key, fmt(from) .. '-0', fmt(to - 1) .. '-1', 'COUNT', 256)
    if #e == 0 then return end
    for _, x in ipairs(e) do
      if fn(x) then return end
    end
    from = seq_of(e[#e][1]) + 1
  end
end

-- the lowest sequence below `base` that the group has not settled (else base)
local function unsettled_floor(base_key, g, glog, gname, base)
  local last = last_delivered(glog, gname)
  if not last then return base end
  local types, corr = filter_of(base_key, g)
  local low = base
  each_entry(glog, last + 1, base, function(x)
    if filter_matches(types, corr, x[2]) then low = seq_of(x[1]) return true end
  end)
  return math.min(low, group_floor(glog, gname, low - 1))
end

-- dead-letter what the group had not settled below base; note in `keep` what is in flight
local function retire_group(sub_key, g, glog, gname, base, keep)
  local last = last_delivered(glog, gname)
  if not last then return 0 end
  local types, corr = filter_of(sub_key, g)
  local gb = sub_key .. ':g:' .. g
  local dead, index = sub_key .. ':dead', sub_key .. ':dead:index'
  local n = 0
  local function bury(x, attempts, error)
    add_dead_letter(dead, index, fmt(seq_of(x[1])), about(x[2]), g, '', 'retention', attempts,
                    error, x[2])
    n = n + 1
  end
  each_entry(glog, last + 1, base, function(x)  -- never read by the group
    if filter_matches(types, corr, x[2]) then bury(x, 0, nil) end
  end)
  if last < base - 1 then redis.call('XGROUP', 'SETID', glog, gname, id_of(fmt(base - 1))) end
  local pel = redis.call('XPENDING', glog, gname, '-', id_of(fmt(base - 1)), 1000000)
  for _, p in ipairs(pel) do
    local m = fmt(seq_of(p[1]))
    if p[2] == PARKED then  -- waiting for redelivery (now or later)
      local e = redis.call('XRANGE', glog, p[1], p[1])
      if #e > 0 then bury(e[1], p[4], redis.call('HGET', gb .. ':reasons', m)) end
      redis.call('XCLAIM', glog, gname, DEAD, 0, p[1], 'JUSTID')
      redis.call('ZREM', gb .. ':avail', m)
      redis.call('ZREM', gb .. ':timers', m)
      redis.call('HDEL', gb .. ':reasons', m)
    elseif p[2] ~= DEAD then
      keep[tonumber(m)] = true  -- in flight: stays until settled
    end
  end
  return n
end

-- remove the entries below base from the log and the partition keys, except those in `keep`
local function remove_below(log, meta, base, keep)
  local parts = tonumber(redis.call('HGET', meta, 'partitions') or '1')
  local lowest = base
  for m in pairs(keep) do lowest = math.min(lowest, m) end
  local keys = {log}
  if parts > 1 then for p = 0, parts - 1 do keys[#keys + 1] = partition_key(log, p) end end
  for _, key in ipairs(keys) do redis.call('XTRIM', key, 'MINID', fmt(lowest) .. '-0') end
  each_entry(log, lowest, base, function(x)
    local m = seq_of(x[1])
    if not keep[m] then
      redis.call('XDEL', log, x[1])
      if parts > 1 then
        local _, _, _, p = about(x[2])
        redis.call('XDEL', partition_key(log, p), x[1])
      end
    end
  end)
end

-- apply retention below base; returns sub, dead-lettered count, sub, count... (policy dead_letter)
local function retire(log, meta, subs, sub_base, base, policy)
  local out = {}
  if policy == 'keep_unsettled' then
    each_group(log, subs, sub_base, function(_, sub_key, g, glog, gname)
      base = math.min(base, unsettled_floor(sub_key, g, glog, gname, base))
    end)
    remove_below(log, meta, base, {})
    return out
  end
  local keep, lost = {}, {}
  each_group(log, subs, sub_base, function(sub, sub_key, g, glog, gname)
    lost[sub] = (lost[sub] or 0) + retire_group(sub_key, g, glog, gname, base, keep)
  end)
  remove_below(log, meta, base, keep)
  for sub, n in pairs(lost) do
    if n > 0 then
      out[#out + 1] = sub
      out[#out + 1] = n
    end
  end
  return out
end
