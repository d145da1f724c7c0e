-- Append a batch, all or nothing: version check, dedup, XADDs (to the main log and, in a stream
-- of several partitions, to each event's partition key, with the same id and fields), counters,
-- retention (retention.lua) and the change notification.
-- An entry has the fields 'e' (the envelope as a JSON array), 'd' (the payload) and 't' (the
-- event's timestamp in ms, for retention by age).
-- KEYS: log meta versions subs
-- ARGV: eid-prefix expected corr dedup-ms maxlen max-age-ms channel partitions policy sub-base,
--       then 6 per event: id corr envelope data partition timestamp-ms
-- Returns 'ok', the log's length, the sequences, then (sub, events retention dead-lettered)...
local log, meta, versions, subs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if ARGV[2] ~= '' then
  local actual = tonumber(redis.call('HGET', versions, ARGV[3]) or '0')
  if actual ~= tonumber(ARGV[2]) then return {'conflict', actual} end
end
local now = now_ms()
local seq = tonumber(redis.call('HGET', meta, 'next') or '0')
local ttl = tonumber(ARGV[4])
local partitioned = tonumber(ARGV[8]) > 1
local out = {}
local batch = {}
local added = 0
for b = 11, #ARGV, 6 do
  local id = ARGV[b]
  local key = ARGV[1] .. id
  local prev = batch[id] or redis.call('GET', key)
  if prev then
    out[#out + 1] = prev
  else
    local m = fmt(seq)
    redis.call('XADD', log, id_of(m), 'e', ARGV[b + 2], 'd', ARGV[b + 3], 't', ARGV[b + 5])
    if partitioned then
      redis.call('XADD', partition_key(log, ARGV[b + 4]), id_of(m), 'e', ARGV[b + 2],
                 'd', ARGV[b + 3], 't', ARGV[b + 5])
    end
    redis.call('SET', key, m, 'PX', ttl)
    redis.call('HINCRBY', versions, ARGV[b + 1], 1)
    batch[id] = m
    out[#out + 1] = m
    seq = seq + 1
    added = added + 1
  end
end
local lost = {}
if added > 0 then
  redis.call('HSET', meta, 'next', fmt(seq))
  local base = first_seq(log, meta)
  local maxlen = tonumber(ARGV[5])
  if maxlen > 0 then base = math.max(base, seq - maxlen) end
  local max_age = tonumber(ARGV[6])
  if max_age > 0 then
    -- the oldest events, up to the first one that is not too old: timestamps may come out of
    -- order, and a fresh event is never dropped for an older one appended after it
    local cutoff = now - max_age
    local fresh = seq
    each_entry(log, base, seq, function(x)
      local t = 0
      for j = 1, #x[2], 2 do if x[2][j] == 't' then t = tonumber(x[2][j + 1]) end end
      if t >= cutoff then fresh = seq_of(x[1]) return true end
    end)
    base = math.max(base, fresh)
  end
  if base > first_seq(log, meta) then
    lost = retire(log, meta, subs, ARGV[10], base, ARGV[9])
  end
  redis.call('PUBLISH', ARGV[7], '')
end
return {'ok', redis.call('XLEN', log), out, lost}
