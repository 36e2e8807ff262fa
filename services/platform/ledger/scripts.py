"""The ledger's Lua scripts: each state change of a mark is one atomic script.

Keys (prefix `P`, default `ledger`; see services.platform.ledger for the invariants):
    P:seq                  global counter; every mark() takes the next value
    P:mark:{kind}:{id}     hash: kind id seq topic data attempts state last_error
                           created_at updated_at due_at claim lease_until claimed_seq
                           busy requeues died_at
    P:due:{kind}           zset id → due time (ms): every live mark (pending, retrying)
    P:dead:{kind}          zset id → time of death (ms): every dead mark
    P:retrying:{kind}      set of ids whose live mark has failed at least once
    P:once:{name}          string (a token) with a TTL: a one-time record written in the same
                           script as the marks (Ledger.mark_many(once=...)); the webhook intake
                           keeps its replay records here, P:once:replay:{sha256}

Times are milliseconds since the epoch, passed in by the caller (one clock for all).
Mark keys in DUE are built from ARGV (the prefix): fine on one Redis server, which is
what the project runs (not Redis Cluster).
"""

# KEYS[1] = P:seq, then per item 4 keys: mark, due, dead, retrying; then, with a one-time
# record (ARGV[3] > 0), its key P:once:{name} last.
# ARGV[1] = now, ARGV[2] = grace ms, ARGV[3] = the record's TTL ms (0: none), ARGV[4] = its
# token, then per item 6 args: id kind topic data revive sticky
# Returns {'held'} when the record exists with another token (nothing marked), else
# {'ok', rows}: per item {seq, outcome}; outcome new | updated | revived | dead (seq 0: a dead
# mark that was not revived; nothing recorded). The record is written LAST, after every mark:
# a script that fails half-way (Redis does not roll back) leaves no record, so the retry of a
# request that got 503 is never taken for a replay.
MARK = """
local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local once_ttl = tonumber(ARGV[3])
local once = nil
if once_ttl > 0 then
  once = KEYS[#KEYS]
  local holder = redis.call('GET', once)
  if holder and holder ~= ARGV[4] then return {'held'} end
end
local out = {}
local n = (#KEYS - 1 - (once and 1 or 0)) / 4
for i = 1, n do
  local mk, due, dead, retr = KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i], KEYS[4*i+1]
  local a = 4 + (i-1)*6
  local id, kind, topic, data, revive, sticky = ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5], ARGV[a+6]
  local state = redis.call('HGET', mk, 'state')
  if state == 'dead' and revive ~= '1' then
    out[#out+1] = {0, 'dead'}
  else
    local seq = redis.call('INCR', KEYS[1])
    local at = now + grace
    if not state then
      redis.call('HSET', mk, 'kind', kind, 'id', id, 'seq', seq, 'topic', topic, 'data', data,
        'attempts', 0, 'state', 'pending', 'last_error', '', 'created_at', now, 'updated_at', now,
        'due_at', at, 'claim', '', 'lease_until', 0, 'claimed_seq', 0, 'busy', 0, 'requeues', 0)
      redis.call('ZADD', due, at, id)
      out[#out+1] = {seq, 'new'}
    elseif state == 'dead' then
      redis.call('HSET', mk, 'seq', seq, 'topic', topic, 'data', data, 'attempts', 0, 'state', 'pending',
        'updated_at', now, 'due_at', at, 'claim', '', 'lease_until', 0, 'died_at', '')
      redis.call('ZREM', dead, id)
      redis.call('SREM', retr, id)
      redis.call('ZADD', due, at, id)
      out[#out+1] = {seq, 'revived'}
    else
      if sticky ~= '' then
        -- A sticky flag the pending payload had is added to the newer one as a last key
        -- ("flag":true wins over an earlier "flag":false, as in every JSON reader we use),
        -- never by re-encoding: cjson would turn an empty list into {} and change numbers.
        local old = cjson.decode(redis.call('HGET', mk, 'data'))
        local new = cjson.decode(data)
        for flag in string.gmatch(sticky, '[^,]+') do
          if old[flag] == true and new[flag] ~= true then
            local body = string.match(data, '^%s*(.-)%s*$')
            if string.match(body, '^{%s*}$') then
              data = '{"' .. flag .. '":true}'
            else
              data = string.sub(body, 1, -2) .. ',"' .. flag .. '":true}'
            end
          end
        end
      end
      redis.call('HSET', mk, 'seq', seq, 'topic', topic, 'data', data, 'updated_at', now)
      local claim = redis.call('HGET', mk, 'claim')
      local lease = tonumber(redis.call('HGET', mk, 'lease_until') or '0') or 0
      if not (claim and claim ~= '' and lease > now) then
        local cur = tonumber(redis.call('ZSCORE', due, id))
        if (not cur) or cur > at then
          redis.call('ZADD', due, at, id)
          redis.call('HSET', mk, 'due_at', at)
        end
      end
      out[#out+1] = {seq, 'updated'}
    end
  end
end
if once then redis.call('SET', once, ARGV[4], 'PX', once_ttl) end
return {'ok', out}
"""

# KEYS: mark, due, dead, retrying, P:seq. ARGV: now, lease ms, token, id, max_attempts, tag seq (0: none)
# Returns {'none'} | {'lost'} | {'dead'} | {'inflight'} | {'claimed', seq, topic, data, attempts, takeover}
# 'lost': no mark, and the event's tag is newer than the global counter: Redis lost data (a
# restart without persistence, or the last second before a crash with appendfsync everysec),
# so the caller must not take "no mark" for "done" (it adopts the event instead).
# A claim whose lease ran out (its worker died or hung) is taken over and counts as a failed
# attempt, so an entity that kills its worker every time ends in the dead list.
BEGIN = """
local now, lease, token, id, max = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  local tag = tonumber(ARGV[6]) or 0
  if tag > 0 and tag > (tonumber(redis.call('GET', KEYS[5])) or 0) then return {'lost'} end
  return {'none'}
end
if state == 'dead' then return {'dead'} end
local claim = redis.call('HGET', KEYS[1], 'claim')
local until_ = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0') or 0
local takeover = 0
if claim and claim ~= '' then
  if until_ > now then return {'inflight'} end
  takeover = 1
  local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'last_error', 'claim lease expired: the worker running it died or hung', 'updated_at', now)
  if attempts >= max then
    redis.call('HSET', KEYS[1], 'state', 'dead', 'claim', '', 'lease_until', 0, 'died_at', now)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('SREM', KEYS[4], id)
    return {'dead', attempts}
  end
  redis.call('HSET', KEYS[1], 'state', 'retrying')
  redis.call('SADD', KEYS[4], id)
end
local f = redis.call('HMGET', KEYS[1], 'seq', 'topic', 'data', 'attempts')
redis.call('HSET', KEYS[1], 'claim', token, 'lease_until', now + lease, 'claimed_seq', f[1], 'due_at', now + lease)
redis.call('ZADD', KEYS[2], now + lease, id)
return {'claimed', f[1], f[2], f[3], f[4], takeover}
"""

# KEYS: mark, due. ARGV: now, lease ms, token, id. Returns 1 when the claim is still ours.
RENEW = """
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[3] then return 0 end
local at = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lease_until', at, 'due_at', at)
redis.call('ZADD', KEYS[2], at, ARGV[4])
return 1
"""

# KEYS: mark, due, dead, retrying. ARGV: now, token, claimed seq, id
# {'done'}: the claim saw the latest mark; it is deleted.
# {'moved', seq, topic, data}: a newer mark arrived during the run and nobody else runs it:
#   it is due now (attempts reset: the run succeeded); the caller enqueues it at once.
# {'moved_inflight'}: a newer mark is being run by another claim (it will finish it).
# {'moved_dead'}: the newer mark is dead (left for an operator). {'gone'}: no mark.
COMPLETE = """
local now, token, claimed, id = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return {'gone'} end
if tonumber(seq) == claimed then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('SREM', KEYS[4], id)
  return {'done'}
end
local f = redis.call('HMGET', KEYS[1], 'state', 'claim', 'lease_until', 'topic', 'data')
if f[1] == 'dead' then return {'moved_dead'} end
if f[2] and f[2] ~= '' and f[2] ~= token and (tonumber(f[3]) or 0) > now then return {'moved_inflight'} end
redis.call('HSET', KEYS[1], 'claim', '', 'lease_until', 0, 'attempts', 0, 'state', 'pending',
  'last_error', '', 'due_at', now, 'updated_at', now)
redis.call('SREM', KEYS[4], id)
redis.call('ZADD', KEYS[2], now, id)
return {'moved', seq, f[4], f[5]}
"""

# KEYS: mark, due, dead, retrying. ARGV: now, token, claimed seq, id, retryable (1/0),
# max_attempts, delay ms, error
# {'retry', attempts, due}: rescheduled (a permanent error on data that has since changed is
#   retried at once: the newer data may not have the problem).
# {'dead', attempts}: moved to the dead list. {'stale'}: the claim is no longer the mark's.
# {'gone'}: no mark.
FAIL = """
local now, token, claimed, id = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local retryable, max, delay, err = ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return {'gone'} end
if redis.call('HGET', KEYS[1], 'claim') ~= token then return {'stale'} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', err, 'claim', '', 'lease_until', 0, 'updated_at', now)
local moved = tonumber(seq) ~= claimed
if (retryable and attempts < max) or (moved and attempts < max + 1) then
  local at = now + delay
  if moved and not retryable then at = now end
  redis.call('HSET', KEYS[1], 'state', 'retrying', 'due_at', at)
  redis.call('SADD', KEYS[4], id)
  redis.call('ZADD', KEYS[2], at, id)
  return {'retry', attempts, at}
end
redis.call('HSET', KEYS[1], 'state', 'dead', 'died_at', now)
redis.call('ZREM', KEYS[2], id)
redis.call('SREM', KEYS[4], id)
redis.call('ZADD', KEYS[3], now, id)
return {'dead', attempts}
"""

# KEYS: mark, due. ARGV: now, token, delay ms, id. No attempt counted.
BUSY = """
if not redis.call('HGET', KEYS[1], 'seq') then return {'gone'} end
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then return {'stale'} end
local at = tonumber(ARGV[1]) + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'claim', '', 'lease_until', 0, 'due_at', at, 'updated_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'busy', 1)
redis.call('ZADD', KEYS[2], at, ARGV[4])
return {'rescheduled', at}
"""

# KEYS: the due zsets, one per kind (ARGV[5..] names the kinds in the same order).
# ARGV: now, limit, lease ms, prefix, kinds...
# The `limit` marks due longest ago, across kinds; each is pushed `lease` ms into the
# future in the same step, so a second sweeper never takes it too.
# Returns a flat list of {kind, id, seq, topic, data, attempts}.
DUE_BATCH = """
local now, limit, lease, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local found = {}
for i = 1, #KEYS do
  local rows = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for j = 1, #rows, 2 do
    found[#found+1] = {tonumber(rows[j+1]), i, rows[j]}
  end
end
table.sort(found, function(a, b) if a[1] == b[1] then return a[3] < b[3] end return a[1] < b[1] end)
local out = {}
for _, row in ipairs(found) do
  if #out >= limit then break end
  local kind, id = ARGV[4 + row[2]], row[3]
  local mk = prefix .. ':mark:' .. kind .. ':' .. id
  local f = redis.call('HMGET', mk, 'seq', 'topic', 'data', 'attempts', 'state')
  if not f[1] or f[5] == 'dead' then
    redis.call('ZREM', KEYS[row[2]], id)
  else
    redis.call('ZADD', KEYS[row[2]], now + lease, id)
    redis.call('HSET', mk, 'due_at', now + lease)
    redis.call('HINCRBY', mk, 'requeues', 1)
    out[#out+1] = {kind, id, f[1], f[2], f[3], f[4]}
  end
end
return out
"""

# KEYS: mark, due, dead, retrying. ARGV: now, id
# A dead or live mark back to pending, attempts reset, due now.
# Returns {} when there is no mark, else {seq, topic, data}.
REPLAY = """
local now, id = tonumber(ARGV[1]), ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'seq', 'topic', 'data')
if not f[1] then return {} end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'due_at', now, 'updated_at', now,
  'claim', '', 'lease_until', 0, 'died_at', '')
redis.call('ZREM', KEYS[3], id)
redis.call('SREM', KEYS[4], id)
redis.call('ZADD', KEYS[2], now, id)
return {f[1], f[2], f[3]}
"""
