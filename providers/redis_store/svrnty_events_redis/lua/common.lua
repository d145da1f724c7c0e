-- Helpers prepended to every script of the Redis store (see the README for the key layout).
--
-- The entry of sequence n has the id 'n-1', in the main log and in the partition keys alike.
-- A delivery group g of subscription s is the Redis consumer group 's:g', on the main log or on
-- a partition's key. Real consumers own their in-flight entries in its pending-entries list
-- (PEL); the pseudo consumer svrnty:parked owns entries waiting for redelivery, svrnty:dead
-- dead letters, so the PEL's delivery count is the attempt count of every unsettled event.
local PARKED = 'svrnty:parked'
local DEAD = 'svrnty:dead'

local function fmt(n) return string.format('%d', n) end
-- a list sent as one argument (far cheaper for the client than one argument each)
local function split(list, sep)
  local out = {}
  for m in string.gmatch(list or '', '[^' .. (sep or ',') .. ']+') do out[#out + 1] = m end
  return out
end
local function id_of(m) return m .. '-1' end
local function seq_of(id) return tonumber(string.match(id, '^(%d+)-')) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The key a group reads: a partition's key when the subscription's 'parts' hash binds the group
-- to a partition, else the main log. Keys are built here rather than passed: they share the
-- stream's {hash tag}, so they are in the slot of the keys that are passed.
local function partition_key(log, p)
  if p == nil or p == false or p == '' then return log end
  return log .. '#' .. p
end
local function group_log(log, parts, group)
  return partition_key(log, redis.call('HGET', parts, group))
end

-- In the PEL a consumer claiming with a visibility timeout of vt ms is named '<consumer>@<vt>',
-- so the timeout of each entry it holds is known from its owner's name.
local function rname(consumer, vt) return consumer .. '@' .. vt end
local function base_of(owner)
  return string.match(owner, '^(.*)@%d+$') or owner
end
local function held_by(owner, consumer)
  return owner ~= nil and owner ~= false and base_of(owner) == consumer
end

-- owner and delivery count of a pending entry, or nil
local function pending(log, gname, id)
  local p = redis.call('XPENDING', log, gname, id, id, 1)
  if #p == 0 then return nil, nil end
  return p[1][2], tonumber(p[1][4])
end

local function first_seq(log, meta)
  local e = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  if #e > 0 then return seq_of(e[1][1]) end
  return tonumber(redis.call('HGET', meta, 'next') or '0')
end

-- the rows of an XINFO reply (GROUPS, CONSUMERS) as tables field -> value; nil if it fails
local function xinfo(...)
  local ok, rows = pcall(redis.call, 'XINFO', ...)
  if not ok then return nil end
  local out = {}
  for _, r in ipairs(rows) do
    local t = {}
    for i = 1, #r, 2 do t[r[i]] = r[i + 1] end
    out[#out + 1] = t
  end
  return out
end

local function last_delivered(log, gname)
  for _, g in ipairs(xinfo('GROUPS', log) or {}) do
    if g['name'] == gname then
      local last = g['last-delivered-id']
      if last == '0-0' then return -1 end
      return seq_of(last)
    end
  end
  return nil
end

-- lowest sequence the group has not settled: its cursor, or an entry some consumer holds
-- (in flight, or parked for redelivery). Dead letters do not hold the stream back: their
-- record keeps a copy of the envelope.
local function group_floor(log, gname, last)
  local f = last + 1
  for _, c in ipairs(xinfo('CONSUMERS', log, gname) or {}) do
    local name = c['name']
    if name ~= DEAD and (c['pending'] or 0) > 0 then
      local p = redis.call('XPENDING', log, gname, '-', '+', 1, name)
      if #p > 0 and seq_of(p[1][1]) < f then f = seq_of(p[1][1]) end
    end
  end
  return f
end

-- create the Redis group on glog with its cursor before `start` (a sequence) or, when nil,
-- before the subscription's start (the oldest retained event when it was created)
local function create_group(glog, log, meta, groups, subs, sub, group, gname, start)
  local first = first_seq(log, meta)
  local begin = math.max(start or tonumber(redis.call('HGET', subs, sub) or '0'), first)
  local last = '0-0'
  if begin > 0 then last = fmt(begin - 1) .. '-1' end
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', glog, gname, last, 'MKSTREAM')
  if not ok and not string.find(tostring(err), 'BUSYGROUP') then error(err) end
  redis.call('SADD', groups, group)
end

-- an entry's event id, type, correlation id and partition, from its fields
local function about(fields)
  local f = {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  if f['e'] then
    local v = cjson.decode(f['e'])
    return v[1], v[2], v[3], v[7] or 0
  end
  return f['id'], f['type'], f['corr'], 0  -- entries written with one field per attribute
end

-- ClaimFilter's event types (a set, or nil for any) and correlation id (or nil for any)
local function type_set(list)
  local out = {}
  for _, t in ipairs(list) do out[t] = true end
  return out
end
local function filter_matches(types, corr, fields)
  if not types and not corr then return true end
  local _, t, c = about(fields)
  return (not types or types[t] == true) and (not corr or c == corr)
end

-- a record in a subscription's dead-letter stream, with a copy of the entry's fields (so it can
-- be listed after the entry is trimmed); the index maps event id -> record
local function add_dead_letter(dead, index, m, event_id, group, consumer, reason, attempts,
                               error, fields)
  local record = {'seq', m, 'event', event_id, 'group', group, 'consumer', consumer,
                  'reason', reason, 'attempts', attempts, 'at', now_ms()}
  if error then
    record[#record + 1] = 'error'
    record[#record + 1] = error
  end
  for _, v in ipairs(fields) do record[#record + 1] = v end
  local old = redis.call('HGET', index, event_id)
  if old then redis.call('XDEL', dead, old) end
  redis.call('HSET', index, event_id, redis.call('XADD', dead, '*', unpack(record)))
end

-- when a consumer lost entries (to a timeout or a release): its acks of entries claimed before
-- are checked. Marks older than a day are dropped once there are many (acks of claims that
-- old are always checked).
local MARK_TTL = 86400000
local function mark_lost(expired, consumer, now)
  redis.call('HSET', expired, consumer, now)
  if redis.call('HLEN', expired) > 1000 then
    local flat = redis.call('HGETALL', expired)
    for i = 1, #flat, 2 do
      if tonumber(flat[i + 1]) < now - MARK_TTL then redis.call('HDEL', expired, flat[i]) end
    end
  end
end
