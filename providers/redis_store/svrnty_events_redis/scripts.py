"""Lua scripts: every multi-key step of the store runs atomically inside Redis.

Conventions shared by the scripts (see the README for the whole mapping):

* the entry of sequence ``n`` in a stream has the id ``n-1`` (so ``0-0`` is "before the
  first event" and a sequence maps to an id without a lookup);
* a delivery group ``g`` of subscription ``s`` is the Redis consumer group ``s:g``; real
  consumers own their in-flight entries in its pending-entries list (PEL), the pseudo consumer
  ``svrnty:parked`` owns entries waiting for redelivery and ``svrnty:dead`` dead-lettered ones,
  so the PEL's delivery count is the attempt count of every event the group has not settled;
* per group: ``avail`` (sorted set of sequences claimable now), ``timers`` (sorted set scored
  by Redis time in ms: ``c:<consumer>@<visibility timeout ms>`` at the earliest visibility
  deadline of the entries the consumer holds, checked against the PEL's idle times when due,
  and ``<sequence>`` at the due time of a delayed redelivery), ``reasons`` (hash sequence -> last nack reason).

Times come from Redis ``TIME``, so deadlines agree across hosts whatever their clocks say.
"""

from __future__ import annotations

COMMON = r"""
local PARKED = 'svrnty:parked'
local DEAD = 'svrnty:dead'

local function fmt(n) return string.format('%d', n) end
-- a comma-separated argument (lists are sent as one argument: far cheaper for the client)
local function split(list)
  local out = {}
  for m in string.gmatch(list or '', '[^,]+') do out[#out + 1] = m end
  return out
end
local function id_of(m) return m .. '-1' end
local function seq_of(id) return tonumber(string.match(id, '^(%d+)-')) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
-- (in flight, or parked by svrnty:parked for redelivery). Dead letters do not hold the stream
-- back: their record keeps a copy of the envelope to list, and one whose entry was trimmed
-- stays in the dead-letter queue when replayed (there is nothing to deliver again).
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

local function create_group(log, meta, groups, subs, sub, group, gname, start)
  local first = first_seq(log, meta)
  local begin
  if start then
    begin = math.max(start, first)
  else
    begin = math.max(tonumber(redis.call('HGET', subs, sub) or '0'), first)
  end
  local last = '0-0'
  if begin > 0 then last = fmt(begin - 1) .. '-1' end
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', log, gname, last, 'MKSTREAM')
  if not ok and not string.find(tostring(err), 'BUSYGROUP') then error(err) end
  redis.call('SADD', groups, group)
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

-- a consumer's entries in flight longer than the visibility timeout go back for redelivery;
-- its timer is set again for the earliest deadline of those it still holds
-- ('expired' records when a consumer last lost entries this way: its acks of entries claimed
-- before then are checked one by one, the others need no check)
local function expire_consumer(log, gname, avail, timers, reasons, expired, rn, now, vt)
  local p = redis.call('XPENDING', log, gname, '-', '+', 1000000, rn)
  local oldest = nil
  for _, x in ipairs(p) do
    local idle = tonumber(x[3])
    if idle >= vt then
      local m = fmt(seq_of(x[1]))
      mark_lost(expired, base_of(rn), now)
      redis.call('XCLAIM', log, gname, PARKED, 0, x[1], 'JUSTID')
      redis.call('HSETNX', reasons, m, 'visibility timeout expired')
      redis.call('ZADD', avail, m, m)
    elseif not oldest or idle > oldest then
      oldest = idle
    end
  end
  if oldest then redis.call('ZADD', timers, now + vt - oldest, 'c:' .. rn) end
end

-- timers: 'c:<consumer>@<vt>' scored by the earliest visibility deadline of what the consumer
-- holds under that name, and '<sequence>' scored by the due time of a delayed redelivery.
-- Process the due ones.
local function process_due(log, gname, avail, timers, reasons, expired, now)
  local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    redis.call('ZREM', timers, m)
    local rn, vt = string.match(m, '^c:(.*@(%d+))$')
    if rn then
      expire_consumer(log, gname, avail, timers, reasons, expired, rn, now, tonumber(vt))
    else
      local owner = pending(log, gname, id_of(m))
      if owner and owner ~= DEAD then
        if owner ~= PARKED then  -- an in-flight entry with a deadline of its own
          mark_lost(expired, base_of(owner), now)
          redis.call('XCLAIM', log, gname, PARKED, 0, id_of(m), 'JUSTID')
          redis.call('HSETNX', reasons, m, 'visibility timeout expired')
        end
        redis.call('ZADD', avail, m, m)
      elseif not owner then
        redis.call('HDEL', reasons, m)
      end
    end
  end
end

-- the consumer now holds entries delivered at or after now: look at them by their deadline
local function arm(timers, rn, now, vt)
  redis.call('ZADD', timers, 'LT', now + vt, 'c:' .. rn)
end

local function next_due(timers)
  local t = redis.call('ZRANGE', timers, 0, 0, 'WITHSCORES')
  if #t == 0 then return false end
  return t[2]
end

-- new entries past the group's cursor, straight into the consumer's PEL
local function read_new(log, gname, rn, timers, n, now, vt, out)
  if n <= 0 then return end
  local r = redis.call('XREADGROUP', 'GROUP', gname, rn, 'COUNT', n, 'STREAMS', log, '>')
  if not r then return end
  if #r[1][2] > 0 then arm(timers, rn, now, vt) end
  for _, e in ipairs(r[1][2]) do
    out[#out + 1] = {fmt(seq_of(e[1])), 1, false, e[2]}
  end
end
"""

# KEYS: log meta versions; ARGV: eid-prefix expected corr dedup-ms maxlen max-age-ms channel
#       then 4 per event: id corr envelope data
# An entry has three fields: 'e' (the envelope as a JSON array: id, type, correlation id,
# timestamp, content type and headers when there are any), 'd' (the payload bytes) and 't'
# (the append time in ms, Redis clock, for retention by age).
APPEND = COMMON + r"""
local log, meta, versions = KEYS[1], KEYS[2], KEYS[3]
if ARGV[2] ~= '' then
  local actual = tonumber(redis.call('HGET', versions, ARGV[3]) or '0')
  if actual ~= tonumber(ARGV[2]) then return {'conflict', actual} end
end
local now = now_ms()
local seq = tonumber(redis.call('HGET', meta, 'next') or '0')
local ttl = tonumber(ARGV[4])
local out = {}
local batch = {}
local added = 0
local n = (#ARGV - 7) / 4
for i = 0, n - 1 do
  local b = 8 + i * 4
  local id = ARGV[b]
  local key = ARGV[1] .. id
  local prev = batch[id] or redis.call('GET', key)
  if prev then
    out[#out + 1] = prev
  else
    local m = fmt(seq)
    redis.call('XADD', log, m .. '-1', 'e', ARGV[b + 2], 'd', ARGV[b + 3], 't', now)
    redis.call('SET', key, m, 'PX', ttl)
    redis.call('HINCRBY', versions, ARGV[b + 1], 1)
    batch[id] = m
    out[#out + 1] = m
    seq = seq + 1
    added = added + 1
  end
end
if added > 0 then
  redis.call('HSET', meta, 'next', fmt(seq))
  local maxlen = tonumber(ARGV[5])
  if maxlen > 0 then redis.call('XTRIM', log, 'MAXLEN', maxlen) end
  local max_age = tonumber(ARGV[6])
  if max_age > 0 then
    local cutoff = now - max_age
    local keep = nil
    while true do
      local e = redis.call('XRANGE', log, '-', '+', 'COUNT', 256)
      if #e == 0 then break end
      for _, x in ipairs(e) do
        local t = 0
        for j = 1, #x[2], 2 do if x[2][j] == 't' then t = tonumber(x[2][j + 1]) end end
        if t >= cutoff then keep = x[1] break end
      end
      if keep then
        redis.call('XTRIM', log, 'MINID', keep)
        break
      end
      redis.call('XTRIM', log, 'MINID', fmt(seq_of(e[#e][1]) + 1) .. '-0')
    end
  end
  redis.call('PUBLISH', ARGV[7], '')
end
return {'ok', redis.call('XLEN', log), out}
"""

# KEYS: log meta subs; ARGV: sub-base (tag prefix of the stream's keys)
TRIM_EPHEMERAL = COMMON + r"""
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
      local last = last_delivered(log, sub .. ':' .. g)
      if last then
        local f = group_floor(log, sub .. ':' .. g, last)
        if f < low then low = f end
      end
    end
  end
end
if low > first_seq(log, meta) then
  redis.call('XTRIM', log, 'MINID', fmt(low) .. '-0')
end
return low
"""

# KEYS: log meta subs; ARGV: sub
CREATE_SUBSCRIPTION = COMMON + r"""
redis.call('HSETNX', KEYS[3], ARGV[1], fmt(first_seq(KEYS[1], KEYS[2])))
return 1
"""

# KEYS: log meta groups subs; ARGV: sub group gname start('' = none)
ENSURE_GROUP = COMMON + r"""
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then return 0 end
local start = nil
if ARGV[4] ~= '' then start = tonumber(ARGV[4]) end
create_group(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], start)
return 1
"""

# KEYS: log groups avail timers reasons expired subs deleted; ARGV: sub group gname
DELETE_GROUP = COMMON + r"""
local log, groups, avail, timers, reasons, expired, subs, deleted = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
if redis.call('SISMEMBER', groups, ARGV[2]) == 0 then return 0 end
local last = last_delivered(log, ARGV[3])
local f = nil
if last then f = group_floor(log, ARGV[3], last) end
pcall(redis.call, 'XGROUP', 'DESTROY', log, ARGV[3])
redis.call('DEL', avail, timers, reasons, expired)
-- acks of entries claimed before now take the checked path if the group is made again
redis.call('SET', deleted, now_ms(), 'PX', 86400000)
redis.call('SREM', groups, ARGV[2])
if f and redis.call('SCARD', groups) == 0 then
  local cur = tonumber(redis.call('HGET', subs, ARGV[1]) or '0')
  if f > cur then redis.call('HSET', subs, ARGV[1], fmt(f)) end
end
return 1
"""

_GROUP_PREAMBLE = r"""
local log, meta, groups, subs, avail, timers, reasons, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local sub, group, gname = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SISMEMBER', groups, group) == 0 then
  create_group(log, meta, groups, subs, sub, group, gname, nil)
end
local now = now_ms()
"""

# Claim without a selector, step 1 of 2: due timers, then entries waiting for redelivery (in
# sequence order). The consumer's timer is set before the caller reads new entries with
# XREADGROUP itself (step 2: Redis replies straight to the client, which is twice as fast as
# a read relayed through Lua), so what it reads is always covered by a deadline.
# KEYS: log meta groups subs avail timers reasons expired; ARGV: sub group gname consumer max vt-ms
CLAIM = COMMON + _GROUP_PREAMBLE + r"""
local max, vt = tonumber(ARGV[5]), tonumber(ARGV[6])
local rn = rname(ARGV[4], vt)
process_due(log, gname, avail, timers, reasons, expired, now)
local out = {}
if max > 0 then
  for _, m in ipairs(redis.call('ZRANGE', avail, 0, max - 1)) do
    redis.call('ZREM', avail, m)
    local id = id_of(m)
    local owner, count = pending(log, gname, id)
    local r = nil
    if owner then r = redis.call('XCLAIM', log, gname, rn, 0, id, 'RETRYCOUNT', count + 1) end
    if r and #r > 0 and r[1] then
      out[#out + 1] = {m, count + 1, redis.call('HGET', reasons, m), r[1][2]}
    else
      redis.call('HDEL', reasons, m)
    end
  end
  arm(timers, rn, now, vt)
end
return {now, next_due(timers), out}
"""

# Claim with a selector, step 1: due timers, the group's read lock, then a page of available
# entries to look at.
# The read lock: a claimer whose selector may skip reads new entries (and hands back those it
# skips) while it holds 'reading', one claimer at a time, and looks at the available entries
# only once it holds it. So an entry read but not yet handed back by one claimer cannot be
# overtaken by a later entry that another claimer reads meanwhile: a workflow's events keep
# their order. A claimer that finds the lock taken takes only available entries, and leaves a
# note ('wanted') so that the holder publishes a change when it lets go. The lock expires
# after the visibility timeout, when the entries of a claimer that died holding it come back.
# KEYS: + reading wanted; ARGV: sub group gname after-seq page first(0/1) vt-ms lock(0/1) token
# Returns now, entries looked at, entries, whether the lock was taken, and when it is taken by
# another claimer, the ms it has left (else -1).
PEEK = COMMON + _GROUP_PREAMBLE + r"""
local reading, wanted = KEYS[9], KEYS[10]
local locked, wait = 0, -1
if ARGV[6] == '1' then
  process_due(log, gname, avail, timers, reasons, expired, now)
  if ARGV[8] == '1' then
    -- (a retried PEEK of this claim finds its own token: the lock is its already)
    if redis.call('SET', reading, ARGV[9], 'NX', 'PX', ARGV[7])
        or redis.call('GET', reading) == ARGV[9] then
      locked = 1
    else
      redis.call('SET', wanted, '1', 'PX', ARGV[7])
      wait = redis.call('PTTL', reading)
    end
  end
end
local out = {}
local page = redis.call('ZRANGEBYSCORE', avail, '(' .. ARGV[4], '+inf', 'LIMIT', 0, tonumber(ARGV[5]))
for _, m in ipairs(page) do
  local e = redis.call('XRANGE', log, id_of(m), id_of(m))
  if #e == 0 then  -- trimmed by retention meanwhile
    redis.call('ZREM', avail, m)
    redis.call('HDEL', reasons, m)
    redis.call('XACK', log, gname, id_of(m))
  else
    out[#out + 1] = {m, e[1][2]}
  end
end
return {now, #page, out, locked, wait}
"""

# Let go of the read lock (see PEEK) if this claim holds it. Publish a change if the claim
# handed back entries it read (others may want them), or if another claimer found the lock
# taken meanwhile and new entries may be left unread (the claim read as many as it could take).
# Otherwise waking the others would only have them look again at what they saw.
# KEYS: reading wanted; ARGV: token channel handed-back(0/1) more-unread(0/1)
UNLOCK = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local wanted = redis.call('DEL', KEYS[2]) == 1
if ARGV[3] == '1' or (wanted and ARGV[4] == '1') then redis.call('PUBLISH', ARGV[2], '') end
return 1
"""

# Claim with a selector, step 2: take the chosen available entries, settle the dropped ones,
# hand back the entries the consumer read but the selector skipped or dropped, then read up to
# n new entries into the consumer's PEL.
# ARGV: sub group gname consumer vt-ms channel n-new, then four lists of sequences (comma
# separated): deliver, drop, skip (read, handed back), drop-new (read, settled); then
# locked (1: the caller holds the read lock and publishes when it lets go)
TAKE = COMMON + _GROUP_PREAMBLE + r"""
local vt, channel = tonumber(ARGV[5]), ARGV[6]
local rn = rname(ARGV[4], vt)
local n_new = tonumber(ARGV[7])
local taken = {}
for _, m in ipairs(split(ARGV[8])) do
  if redis.call('ZREM', avail, m) == 1 then
    local owner, count = pending(log, gname, id_of(m))
    local r = nil
    if owner then r = redis.call('XCLAIM', log, gname, rn, 0, id_of(m), 'JUSTID', 'RETRYCOUNT', count + 1) end
    if r and #r > 0 then
      taken[#taken + 1] = {m, count + 1, redis.call('HGET', reasons, m)}
    else
      redis.call('HDEL', reasons, m)
    end
  end
end
if #taken > 0 then arm(timers, rn, now, vt) end
for _, m in ipairs(split(ARGV[9])) do
  if redis.call('ZREM', avail, m) == 1 then
    redis.call('XACK', log, gname, id_of(m))
    redis.call('HDEL', reasons, m)
  end
end
local skipped = 0
for _, m in ipairs(split(ARGV[10])) do
  if pending(log, gname, id_of(m)) == rn then
    redis.call('XCLAIM', log, gname, PARKED, 0, id_of(m), 'JUSTID', 'RETRYCOUNT', 0)
    redis.call('ZADD', avail, m, m)
    skipped = skipped + 1
  end
end
for _, m in ipairs(split(ARGV[11])) do
  if pending(log, gname, id_of(m)) == rn then
    redis.call('XACK', log, gname, id_of(m))
    redis.call('HDEL', reasons, m)
  end
end
-- (a claim that holds the read lock publishes once, when it lets go of it)
if skipped > 0 and ARGV[12] ~= '1' then redis.call('PUBLISH', channel, '') end
local new = {}
read_new(log, gname, rn, timers, n_new, now, vt, new)
return {now, next_due(timers), taken, new}
"""

# Settle the entries a consumer holds. The caller says when (Redis ms) it claimed the oldest of
# the batch: if the consumer has lost no entry to its visibility timeout since then, it still
# holds every entry it claimed and has not settled, so the ids are settled as given, one XACK
# per 1000 with no per-entry check. Otherwise each entry's owner is checked.
# KEYS: log groups reasons expired deleted; ARGV: gname group consumer eid-prefix since-ms, the entry
# ids (comma separated), the sequences that have a nack reason (comma separated), then event
# ids whose sequence the caller does not know. Returns the positions (from 1: entry ids, then
# event ids) of the entries the consumer did not hold.
ACK = COMMON + r"""
local log, groups, reasons, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local gname, consumer = ARGV[1], ARGV[3]
local ids, with_reason = split(ARGV[6]), split(ARGV[7])
local k = #ids
local missing = {}
if redis.call('SISMEMBER', groups, ARGV[2]) == 0 then
  for i = 1, k + #ARGV - 7 do missing[i] = i end
  return missing
end
if k > 0 then
  local last = math.max(tonumber(redis.call('HGET', expired, consumer) or '-1'),
                        tonumber(redis.call('GET', KEYS[5]) or '-1'))
  local since = tonumber(ARGV[5])
  if last < since and since > now_ms() - MARK_TTL then
    for i = 1, k, 1000 do
      redis.call('XACK', log, gname, unpack(ids, i, math.min(i + 999, k)))
    end
  else
    for i = 1, k do
      if held_by(pending(log, gname, ids[i]), consumer) then
        redis.call('XACK', log, gname, ids[i])
      else
        missing[#missing + 1] = i
      end
    end
  end
end
for i = 1, #with_reason, 1000 do
  redis.call('HDEL', reasons, unpack(with_reason, i, math.min(i + 999, #with_reason)))
end
for i = 8, #ARGV do
  local m = redis.call('GET', ARGV[4] .. ARGV[i])
  if m and held_by(pending(log, gname, id_of(m)), consumer) then
    redis.call('XACK', log, gname, id_of(m))
    redis.call('HDEL', reasons, m)
  else
    missing[#missing + 1] = k + i - 7
  end
end
return missing
"""

# Record an event as processed and settle it, in one step (Delivery.process_once). The mark is
# recorded even when the consumer no longer holds the event: the effect was applied.
# KEYS: log groups reasons processed; ARGV: gname group consumer eid-prefix event-id seq|''
# Returns 1 if the ack settled an event the consumer held.
ACK_PROCESSED = COMMON + r"""
local log, groups, reasons, processed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local gname, consumer = ARGV[1], ARGV[3]
redis.call('SADD', processed, ARGV[5])
if redis.call('SISMEMBER', groups, ARGV[2]) == 0 then return 0 end
local m = ARGV[6]
if m == '' then m = redis.call('GET', ARGV[4] .. ARGV[5]) end
if not m or not held_by(pending(log, gname, id_of(m)), consumer) then return 0 end
redis.call('XACK', log, gname, id_of(m))
redis.call('HDEL', reasons, m)
return 1
"""

# KEYS: log groups avail timers reasons expired; ARGV: gname group consumer eid-prefix event-id
#       seq delay-ms reason channel
NACK = COMMON + r"""
local log, groups, avail, timers, reasons = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local gname, consumer = ARGV[1], ARGV[3]
if redis.call('SISMEMBER', groups, ARGV[2]) == 0 then return 0 end
local m = ARGV[6]
if m == '' then m = redis.call('GET', ARGV[4] .. ARGV[5]) end
if not m or not held_by(pending(log, gname, id_of(m)), consumer) then return 0 end
redis.call('XCLAIM', log, gname, PARKED, 0, id_of(m), 'JUSTID')
if ARGV[8] ~= '' then redis.call('HSET', reasons, m, ARGV[8]) end
local delay = tonumber(ARGV[7])
if delay > 0 then
  redis.call('ZADD', timers, now_ms() + delay, m)
else
  redis.call('ZADD', avail, m, m)
end
redis.call('PUBLISH', ARGV[9], '')
return 1
"""

# KEYS: log groups avail timers expired; ARGV: gname group consumer channel unseen-entry-ids
# (comma separated)
RELEASE = COMMON + r"""
local log, groups, avail, timers, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local gname, consumer = ARGV[1], ARGV[3]
if redis.call('SISMEMBER', groups, ARGV[2]) == 0 then return 0 end
local unseen = {}
for _, id in ipairs(split(ARGV[5])) do unseen[id] = true end
local n = 0
for _, c in ipairs(xinfo('CONSUMERS', log, gname) or {}) do
  local name = c['name']
  if name ~= PARKED and name ~= DEAD and held_by(name, consumer) then
    while true do
      local p = redis.call('XPENDING', log, gname, '-', '+', 1000, name)
      for _, x in ipairs(p) do
        local m = fmt(seq_of(x[1]))
        if unseen[x[1]] then  -- handed over to no code: this delivery does not count
          redis.call('XCLAIM', log, gname, PARKED, 0, x[1], 'JUSTID', 'RETRYCOUNT', math.max(tonumber(x[4]) - 1, 0))
        else
          redis.call('XCLAIM', log, gname, PARKED, 0, x[1], 'JUSTID')
        end
        redis.call('ZADD', avail, m, m)
        n = n + 1
      end
      if #p < 1000 then break end
    end
    redis.call('ZREM', timers, 'c:' .. name)
    redis.call('XGROUP', 'DELCONSUMER', log, gname, name)
  end
end
if n > 0 then
  -- its entries were taken from it, as by an expiry: its acks of them must be checked
  mark_lost(expired, consumer, now_ms())
  redis.call('PUBLISH', ARGV[4], '')
end
return n
"""

# KEYS: log groups avail timers reasons expired dead dead-index
# ARGV: gname group consumer eid-prefix event-id seq reason attempts error has-error
DEAD_LETTER = COMMON + r"""
local log, groups, avail, timers, reasons, dead, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8]
local gname = ARGV[1]
if redis.call('SISMEMBER', groups, ARGV[2]) == 0 then return 0 end
local m = ARGV[6]
if m == '' then m = redis.call('GET', ARGV[4] .. ARGV[5]) end
if not m then return 0 end
local owner = pending(log, gname, id_of(m))
-- held by this consumer, or waiting for redelivery: not another consumer's in-flight entry
if not owner or owner == DEAD or (owner ~= PARKED and not held_by(owner, ARGV[3])) then
  return 0
end
redis.call('ZREM', timers, m)
redis.call('ZREM', avail, m)
redis.call('HDEL', reasons, m)
local e = redis.call('XRANGE', log, id_of(m), id_of(m))
if #e == 0 then
  redis.call('XACK', log, gname, id_of(m))
  return 0
end
redis.call('XCLAIM', log, gname, DEAD, 0, id_of(m), 'JUSTID')
local old = redis.call('HGET', index, ARGV[5])
if old then redis.call('XDEL', dead, old) end
local fields = {'seq', m, 'event', ARGV[5], 'group', ARGV[2], 'consumer', ARGV[3],
                'reason', ARGV[7], 'attempts', ARGV[8], 'at', now_ms()}
if ARGV[10] == '1' then
  fields[#fields + 1] = 'error'
  fields[#fields + 1] = ARGV[9]
end
for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
local xid = redis.call('XADD', dead, '*', unpack(fields))
redis.call('HSET', index, ARGV[5], xid)
return 1
"""

# KEYS: log dead dead-index groups; ARGV: sub sub-base channel replay(1)|purge(0) event-ids...
SETTLE_DEAD = COMMON + r"""
local log, dead, index, groups = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sub, base, replay = ARGV[1], ARGV[2], ARGV[4] == '1'
local letters = {}
if #ARGV == 4 then
  letters = redis.call('XRANGE', dead, '-', '+')
else
  for i = 5, #ARGV do
    local xid = redis.call('HGET', index, ARGV[i])
    if xid then
      local e = redis.call('XRANGE', dead, xid, xid)
      if #e > 0 then letters[#letters + 1] = e[1] end
    end
  end
end
local n = 0
for _, x in ipairs(letters) do
  local f = {}
  for j = 1, #x[2], 2 do f[x[2][j]] = x[2][j + 1] end
  -- an event whose stream entry was trimmed cannot be delivered again: its dead letter stays
  local gone = replay and #redis.call('XRANGE', log, id_of(f['seq']), id_of(f['seq'])) == 0
  if not gone then
  redis.call('XDEL', dead, x[1])
  redis.call('HDEL', index, f['event'] or f['id'])
  local gname = sub .. ':' .. f['group']
  if redis.call('SISMEMBER', groups, f['group']) == 1 then
    if replay then
      local r = redis.call('XCLAIM', log, gname, PARKED, 0, id_of(f['seq']), 'JUSTID', 'RETRYCOUNT', 0)
      if #r > 0 then
        local gb = base .. ':g:' .. f['group']
        redis.call('HDEL', gb .. ':reasons', f['seq'])
        redis.call('ZADD', gb .. ':avail', f['seq'], f['seq'])
      end
    else
      redis.call('XACK', log, gname, id_of(f['seq']))
    end
  end
  n = n + 1
  end
end
if replay and n > 0 then redis.call('PUBLISH', ARGV[3], '') end
return n
"""

# KEYS: receipts; ARGV: consumer read(0/1) event-ids...
RECEIPTS = COMMON + r"""
local now = fmt(now_ms())
for i = 3, #ARGV do
  local field = ARGV[1] .. '\n' .. ARGV[i]
  local v = redis.call('HGET', KEYS[1], field)
  if not v then v = now .. ':' end
  if ARGV[2] == '1' and string.sub(v, -1) == ':' then v = v .. now end
  redis.call('HSET', KEYS[1], field, v)
end
return 1
"""

# Leases of a delivery group (for modes that coordinate consumers across hosts): a hash of
# key -> '<expiry ms, Redis clock>:<holder>'. Release, then take or renew, then list (and drop
# the expired ones), in one step.
# KEYS: leases; ARGV: n, then n triples (key holder ttl-ms) to take, then pairs (key holder) to
# release. Returns key, holder, key, holder... of every unexpired lease.
LEASES = COMMON + r"""
local leases = KEYS[1]
local now = now_ms()
local n = tonumber(ARGV[1])
local function parse(v)
  local expiry, holder = string.match(v, '^(%d+):(.*)$')
  return tonumber(expiry), holder
end
for i = 2 + 3 * n, #ARGV - 1, 2 do
  local v = redis.call('HGET', leases, ARGV[i])
  if v then
    local _, holder = parse(v)
    if holder == ARGV[i + 1] then redis.call('HDEL', leases, ARGV[i]) end
  end
end
for j = 0, n - 1 do
  local b = 2 + 3 * j
  local key, holder = ARGV[b], ARGV[b + 1]
  local v = redis.call('HGET', leases, key)
  local take = true
  if v then
    local expiry, current = parse(v)
    take = expiry <= now or current == holder
  end
  if take then redis.call('HSET', leases, key, fmt(now + tonumber(ARGV[b + 2])) .. ':' .. holder) end
end
local out = {}
local all = redis.call('HGETALL', leases)
for k = 1, #all, 2 do
  local expiry, holder = parse(all[k + 1])
  if expiry <= now then
    redis.call('HDEL', leases, all[k])
  else
    out[#out + 1] = all[k]
    out[#out + 1] = holder
  end
end
return out
"""
