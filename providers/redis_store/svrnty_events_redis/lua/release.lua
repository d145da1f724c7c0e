-- Return events a consumer holds for redelivery now: all of them (its consumers in the PEL are
-- then deleted, so consumers that left do not pile up in XINFO CONSUMERS), or only some.
-- An unseen event (claimed, never handed to code) gets its delivery count back.
-- ARGV 7..: all(0/1), k, then k pairs (event id, known sequence|'') to release (when not all),
--           then pairs (event id, known sequence|'') of the unseen ones.
if not exists then return 0 end
local k = tonumber(ARGV[8])
local unseen = {}
for i = 9 + 2 * k, #ARGV - 1, 2 do
  local m = seq_for(ARGV[i + 1], ARGV[i])
  if m then unseen[id_of(m)] = true end
end
local n = 0
local function park(id, count)
  if unseen[id] then  -- handed to no code: this delivery does not count
    redis.call('XCLAIM', glog, gname, PARKED, 0, id, 'JUSTID', 'RETRYCOUNT', math.max(count - 1, 0))
  else
    redis.call('XCLAIM', glog, gname, PARKED, 0, id, 'JUSTID')
  end
  local m = fmt(seq_of(id))
  redis.call('ZADD', avail, m, m)
  n = n + 1
end
if ARGV[7] == '1' then
  for _, c in ipairs(xinfo('CONSUMERS', glog, gname) or {}) do
    local name = c['name']
    if name ~= PARKED and name ~= DEAD and held_by(name, consumer) then
      while true do
        local p = redis.call('XPENDING', glog, gname, '-', '+', 1000, name)
        for _, x in ipairs(p) do park(x[1], tonumber(x[4])) end
        if #p < 1000 then break end
      end
      redis.call('ZREM', timers, 'c:' .. name)
      redis.call('XGROUP', 'DELCONSUMER', glog, gname, name)
    end
  end
  -- its entries were taken from it, as by an expiry: its acks of them must be checked
  if n > 0 then mark_lost(expired, consumer, now_ms()) end
else
  for i = 9, 8 + 2 * k, 2 do
    local m = seq_for(ARGV[i + 1], ARGV[i])
    if m then
      local owner, count = pending(glog, gname, id_of(m))
      if held_by(owner, consumer) then park(id_of(m), count) end
    end
  end
end
if n > 0 then redis.call('PUBLISH', channel, '') end
return n
