"""The Lua scripts behind `Reservations`: each read-check-write on the budget counters runs
as one of these, atomically inside Redis.

Apart from reservations.py so that the Python side (keys, arguments, replies) reads as one
piece there; the safety argument these scripts implement stays in reservations.py's
docstring. Each script's comment gives the KEYS and ARGV it takes, in the order
`Reservations` passes them, and what it returns. Used by reservations.py alone, so the
independence of the coordination modules (setup.cfg) is unchanged.
"""
from __future__ import annotations

# The prefix's owner, claimed by the first program to use it. KEYS[4]: owner; ARGV[5]: program id
# (the head of RESERVE and RECONCILE, which is why both keep those two positions).
_OWNER_CHECK = """
local owner = redis.call('GET', KEYS[4])
if not owner then redis.call('SET', KEYS[4], ARGV[5])
elseif owner ~= ARGV[5] then return {'foreign', owner} end
"""

# KEYS: epoch, inflight, payloads, owner, usage keys...
# ARGV: reservation id, deadline (ms), settle (ms; unused since epochs begin in
#       `Reservations.begin_epoch`, kept so that the program id stays ARGV[5] as in
#       reconciliation), payload, program id, then per usage key:
#       cost, redemptions, budget limit (-1: none), max redemptions (-1: none)
# Returns {"ok", spent, redemptions, ...} (each usage key's counters once reserved),
# {"full", i...} (1-based positions that do not fit), {"init", i...} (counters not built
# yet), {"wait", ms} (settling after Redis lost its data), {"new"} (no epoch: new, or its
# data lost; see `Reservations.begin_epoch`) or {"foreign", owner} (the prefix holds another
# program's counters).
RESERVE = _OWNER_CHECK + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local settled = redis.call('GET', KEYS[1])
if not settled then return {'new'} end
if now < tonumber(settled) then return {'wait', string.format('%d', tonumber(settled) - now)} end
local missing = {'init'}
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then missing[#missing + 1] = i - 4 end
end
if #missing > 1 then return missing end
local full = {'full'}
for i = 5, #KEYS do
  local a = 6 + (i - 5) * 4
  local usage = redis.call('HMGET', KEYS[i], 's', 'r')
  local budget, most = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if (budget >= 0 and tonumber(usage[1]) + tonumber(ARGV[a]) > budget)
     or (most >= 0 and tonumber(usage[2]) + tonumber(ARGV[a + 1]) > most) then
    full[#full + 1] = i - 4
  end
end
if #full > 1 then return full end
local reply = {'ok'}
for i = 5, #KEYS do
  local a = 6 + (i - 5) * 4
  reply[#reply + 1] = redis.call('HINCRBY', KEYS[i], 's', ARGV[a])
  reply[#reply + 1] = redis.call('HINCRBY', KEYS[i], 'r', ARGV[a + 1])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return reply
"""

# A refund's intent: in flight, counters untouched until it is confirmed.
# KEYS: inflight, payloads; ARGV: reservation id, deadline, payload
INTEND_REFUND = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

# The transaction did not commit: give back what the reservation took (only once).
# KEYS: inflight, payloads, usage keys...; ARGV: reservation id, refund (1/0),
#       then per usage key: cost, redemptions
RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[2] == '1' then return 1 end
for i = 3, #KEYS do
  local a = 3 + (i - 3) * 2
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 's', string.format('%d', -tonumber(ARGV[a])))
    redis.call('HINCRBY', KEYS[i], 'r', string.format('%d', -tonumber(ARGV[a + 1])))
  end
end
return 1
"""

# The transaction committed. KEYS: inflight, payloads, confirmed, usage keys...
# ARGV: reservation id, refund (1/0), keep confirmed (ms), then per usage key: cost, redemptions
# A confirmed reservation is kept, with its payload in the member itself, for `keep` ms:
# reconciliation counts those confirmed after it read the Redis clock.
CONFIRM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local payload = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('(%d', now - tonumber(ARGV[3])))
if ARGV[2] == '1' then
  for i = 4, #KEYS do
    local a = 4 + (i - 4) * 2
    -- A counter not built yet will be built from the ledger, which has this refund.
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('HINCRBY', KEYS[i], 's', ARGV[a])
      redis.call('HINCRBY', KEYS[i], 'r', ARGV[a + 1])
    end
  end
  return 1
end
if payload then redis.call('ZADD', KEYS[3], now, ARGV[1] .. ' ' .. payload) end
return 1
"""

# The prefix's epoch begins, settled `ARGV[1]` ms from now, unless it has one already.
# KEYS: epoch. Returns the epoch's value set, or false when it existed.
BEGIN_EPOCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local settled = string.format('%d', now + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], settled)
return settled
"""

# Whether events could reserve now, changing nothing. KEYS: epoch, owner, usage keys...
# ARGV: program id. Returns {"ok"}, {"new"}, {"wait", ms}, {"foreign", owner} or
# {"init", i...} (counters not built yet), in the order a reservation meets them.
READINESS = """
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return {'foreign', owner} end
local settled = redis.call('GET', KEYS[1])
if not settled then return {'new'} end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now < tonumber(settled) then return {'wait', string.format('%d', tonumber(settled) - now)} end
local missing = {'init'}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then missing[#missing + 1] = i - 2 end
end
if #missing > 1 then return missing end
return {'ok'}
"""

# Deletes a lock only if it still holds this token. KEYS: lock; ARGV: token
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Step one of reconciliation: the Redis clock (T0), read before the ledger is.
CLOCK = """
local clock = redis.call('TIME')
return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# Step two. KEYS: epoch, inflight, payloads, owner, confirmed, usage keys...
# ARGV: T0 (ms), expired before (ms, host clock), keep confirmed (ms), only missing (1/0),
#       program id, then per usage key: campaign id, ledger spent, ledger redemptions
# Sets each counter to ledger + in flight + confirmed since T0; returns the number set,
# -1 when the ledger was read too long ago (confirmations since may have been pruned),
# -2 while settling after a data loss, -3 without an epoch (see `Reservations.begin_epoch`), or
# {"foreign", owner} (another program's prefix).
RECONCILE = _OWNER_CHECK + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local t0 = tonumber(ARGV[1])
if now - t0 >= tonumber(ARGV[3]) then return -1 end
local settled = redis.call('GET', KEYS[1])
if not settled then return -3 end
if now < tonumber(settled) then return -2 end
local extra_s, extra_r = {}, {}
local function add(payload)
  for _, entry in ipairs(cjson.decode(payload)) do
    local id = entry[1]
    extra_s[id] = (extra_s[id] or 0) + entry[2]
    extra_r[id] = (extra_r[id] or 0) + entry[3]
  end
end
-- Past deadline and grace: its transaction can no longer commit, and if it did commit
-- the ledger sums hold it.
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])) do
  redis.call('ZREM', KEYS[2], rid)
  redis.call('HDEL', KEYS[3], rid)
end
for _, rid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if string.sub(rid, 1, 2) == 'f:' then
    -- A refund not confirmed yet: the ledger sums have it or will; never apply it twice.
    redis.call('ZREM', KEYS[2], rid)
    redis.call('HDEL', KEYS[3], rid)
  else
    local payload = redis.call('HGET', KEYS[3], rid)
    if payload then add(payload) end
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], t0, '+inf')) do
  add(string.sub(member, string.find(member, ' ', 1, true) + 1))
end
local set = 0
for i = 6, #KEYS do
  local a = 6 + (i - 6) * 3
  if ARGV[4] == '0' or redis.call('EXISTS', KEYS[i]) == 0 then
    local id = ARGV[a]
    redis.call('HSET', KEYS[i],
               's', string.format('%d', tonumber(ARGV[a + 1]) + (extra_s[id] or 0)),
               'r', string.format('%d', tonumber(ARGV[a + 2]) + (extra_r[id] or 0)))
    set = set + 1
  end
end
return set
"""
