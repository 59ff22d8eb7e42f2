"""Lua scripts of the case store: each operation on cases, leases and verdicts is one atomic script call.

Every script gets ``ARGV[1]`` = the Redis key prefix and ``ARGV[2]`` = now (epoch s) and builds the per-entity
keys of :mod:`fraudstream.stream.state.keys` from the prefix (the store runs on one Redis, not a cluster).
:data:`LIBRARY` holds the helpers the scripts share: refreshing a case's aggregates and indexes from its pending
items, resolving one item, appending to the audit journal and the label log.
"""

from __future__ import annotations

#: Defaults of the settings the scripts need (the review service's settings use them as their defaults, and
#: writes what it runs with to ``<p>:review:config``; the worker passes nothing and the scripts read that hash).
DEFAULT_SLA_S = 4 * 3600
DEFAULT_AGE_DOUBLING_S = 4 * 3600
DEFAULT_RETENTION_S = 90 * 86_400

LIBRARY = r"""
local ROOT = ARGV[1]
local NOW = tonumber(ARGV[2])
local B = ROOT .. ':review'
-- a setting given in ARGV, else the review service's config hash, else the default
local function setting(given, name, default)
  if given and given ~= '' then return tonumber(given) end
  local stored = redis.call('HGET', B .. ':config', name)
  if stored then return tonumber(stored) end
  return default
end
""" + f"""local DEFAULTS = {{sla_s = {DEFAULT_SLA_S}, age_doubling_s = {DEFAULT_AGE_DOUBLING_S},
                  retention_s = {DEFAULT_RETENTION_S}}}
""" + r"""
local function fmt(x) return string.format('%.17g', x) end
local function case_key(cid) return B .. ':case:' .. cid end
local function items_key(cid) return B .. ':case-items:' .. cid end
local function item_key(tid) return ROOT .. ':review:item:' .. tid end
local SORT_KEYS = {B .. ':idx:priority', B .. ':idx:age', B .. ':idx:amount', B .. ':idx:risk'}

local function audit(cutoff_ms, actor, action, target, before, after, note)
  redis.call('XADD', B .. ':audit', 'MINID', '~', cutoff_ms, '*', 'at', fmt(NOW), 'actor', actor,
             'action', action, 'target', target, 'before', before, 'after', after, 'note', note or '')
end

local function unindex(cid)
  for _, k in ipairs(SORT_KEYS) do redis.call('ZREM', k, cid) end
  redis.call('ZREM', B .. ':available', cid)
  redis.call('ZREM', B .. ':escalated', cid)
  redis.call('ZREM', B .. ':leases', cid)
end

local function item_stage(f)
  if f.stage and f.stage ~= '' then return f.stage end
  if f.heavy_score and f.heavy_score ~= '' then return 'HEAVY' end
  if f.reasons and string.find(f.reasons, '"rule:', 1, true) then return 'RULES' end
  return 'LIGHT'
end

local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Recompute a case's aggregates and indexes from its pending items; resolve it when none is left.
-- Returns 1 when the case is (still) open, 0 when it was resolved now.
local function refresh(cid, doubling, retention)
  local ck = case_key(cid)
  local tids = redis.call('ZRANGE', items_key(cid), 0, -1)
  if #tids == 0 then
    local owner = redis.call('HGET', ck, 'owner')
    if owner and owner ~= '' and redis.call('GET', B .. ':holder:' .. owner) == cid then
      redis.call('DEL', B .. ':holder:' .. owner)
    end
    redis.call('HSET', ck, 'status', 'resolved', 'resolved_at', fmt(NOW), 'items', '0', 'owner', '', 'lease_until', '')
    redis.call('EXPIRE', ck, retention)
    redis.call('DEL', items_key(cid))
    unindex(cid)
    return 0
  end
  local n, amount, el, top_risk, top_reasons = 0, 0.0, 0.0, -1.0, '[]'
  local stages, models = {}, {}
  for _, tid in ipairs(tids) do
    local f = hash_table(redis.call('HGETALL', item_key(tid)))
    local a, r = tonumber(f.amount) or 0.0, tonumber(f.risk) or 0.0
    n = n + 1
    amount = amount + a
    el = el + a * r
    if r > top_risk then top_risk, top_reasons = r, (f.reasons or '[]') end
    stages[item_stage(f)] = true
    if f.model_version then models[f.model_version] = true end
  end
  local sl, ml = {}, {}
  for s in pairs(stages) do sl[#sl + 1] = s end
  for m in pairs(models) do ml[#ml + 1] = m end
  table.sort(sl); table.sort(ml)
  local opened = tonumber(redis.call('HGET', ck, 'opened_at')) or NOW
  local pkey = math.log(math.max(el, 0.01)) / math.log(2) - opened / doubling
  redis.call('HSET', ck, 'items', n, 'amount', fmt(amount), 'expected_loss', fmt(el), 'top_risk', fmt(top_risk),
             'top_reasons', top_reasons, 'stages', table.concat(sl, ','), 'models', table.concat(ml, ','),
             'pkey', fmt(pkey))
  redis.call('ZADD', SORT_KEYS[1], pkey, cid)
  redis.call('ZADD', SORT_KEYS[2], opened, cid)
  redis.call('ZADD', SORT_KEYS[3], amount, cid)
  redis.call('ZADD', SORT_KEYS[4], top_risk, cid)
  local c = redis.call('HMGET', ck, 'owner', 'escalated')
  if c[1] and c[1] ~= '' then
    redis.call('ZREM', B .. ':available', cid)
    redis.call('ZREM', B .. ':escalated', cid)
  elseif c[2] == '1' then
    redis.call('ZREM', B .. ':available', cid)
    redis.call('ZADD', B .. ':escalated', pkey, cid)
  else
    redis.call('ZREM', B .. ':escalated', cid)
    redis.call('ZADD', B .. ':available', pkey, cid)
  end
  return 1
end

-- Resolve one pending item: status, verdict, who, note; label-log entry (publish = 1 goes to the labels topic).
local function resolve_item(tid, verdict, source, actor, note, retention, cutoff_ms, publish)
  local ik = item_key(tid)
  local f = hash_table(redis.call('HGETALL', ik))
  redis.call('HSET', ik, 'status', 'resolved', 'verdict', verdict, 'source', source, 'analyst', actor,
             'note', note, 'resolved_at', fmt(NOW))
  redis.call('EXPIRE', ik, retention)
  if f.customer_id then redis.call('ZREM', items_key(f.customer_id), tid) end
  redis.call('XADD', B .. ':label-log', 'MINID', '~', cutoff_ms, '*', 'transaction_id', tid,
             'customer_id', f.customer_id or '', 'terminal_id', f.terminal_id or '', 'amount', f.amount or '',
             'tx_timestamp', f.event_timestamp or '', 'fraud', verdict == 'fraud' and '1' or '0',
             'known_at', fmt(NOW), 'source', source, 'analyst', actor, 'note', note,
             'model_version', f.model_version or '', 'publish', publish)
  return f
end
"""

#: Move up to ARGV[3] inbox items into their cards' cases.  ARGV: root, now, max items, doubling (s), sla (s),
#: retention (s) (each '' = from the config hash).  Returns the number of items moved.
INGEST = LIBRARY + r"""
local limit = tonumber(ARGV[3])
local doubling = setting(ARGV[4], 'age_doubling_s', DEFAULTS.age_doubling_s)
local sla = setting(ARGV[5], 'sla_s', DEFAULTS.sla_s)
local retention = setting(ARGV[6], 'retention_s', DEFAULTS.retention_s)
local inbox = ROOT .. ':review:pending'
local tids = redis.call('ZRANGE', inbox, 0, limit - 1)
local touched, order = {}, {}
for _, tid in ipairs(tids) do
  redis.call('ZREM', inbox, tid)
  local f = redis.call('HMGET', item_key(tid), 'customer_id', 'risk', 'decided_at', 'status')
  if f[1] and f[4] == 'pending' then
    local cid = f[1]
    local ck = case_key(cid)
    if redis.call('HGET', ck, 'status') ~= 'open' then
      redis.call('DEL', ck, items_key(cid))
      redis.call('PERSIST', ck)
      local opened = tonumber(f[3]) or NOW
      redis.call('HSET', ck, 'customer_id', cid, 'status', 'open', 'opened_at', fmt(opened),
                 'sla_due', fmt(opened + sla), 'owner', '', 'lease_until', '', 'escalated', '0')
    else
      local opened = tonumber(redis.call('HGET', ck, 'opened_at'))
      local t = tonumber(f[3])
      if t and opened and t < opened then
        redis.call('HSET', ck, 'opened_at', fmt(t), 'sla_due', fmt(t + sla))
      end
    end
    redis.call('ZADD', items_key(cid), tonumber(f[2]) or 0, tid)
    redis.call('HSET', item_key(tid), 'case', cid)
    if not touched[cid] then touched[cid] = true; order[#order + 1] = cid end
  end
end
for _, cid in ipairs(order) do refresh(cid, doubling, retention) end
return #tids
"""

#: Return expired leases, then lease the best claimable case to ARGV[3].  ARGV: root, now, analyst, is admin
#: (0/1), lease (s), scan (cases looked at), doubling (s), retention (s), and optionally the case id wanted
#: (its claim gives up the case held).  Returns {case id, 'held'|'new'}, false when nothing is claimable, or
#: {code, 'error'} ('no_case', 'taken', 'not_admin') for a wanted case that cannot be claimed.
CLAIM = LIBRARY + r"""
local analyst, admin, lease = ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
local scan, doubling, retention = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local expired = redis.call('ZRANGEBYSCORE', B .. ':leases', '-inf', NOW, 'LIMIT', 0, 256)
for _, cid in ipairs(expired) do
  redis.call('ZREM', B .. ':leases', cid)
  local owner = redis.call('HGET', case_key(cid), 'owner')
  if owner and owner ~= '' and redis.call('GET', B .. ':holder:' .. owner) == cid then
    redis.call('DEL', B .. ':holder:' .. owner)
  end
  redis.call('HSET', case_key(cid), 'owner', '', 'lease_until', '')
  if redis.call('HGET', case_key(cid), 'status') == 'open' then refresh(cid, doubling, retention) end
end
local held = redis.call('GET', B .. ':holder:' .. analyst)
if held then
  local c = redis.call('HMGET', case_key(held), 'status', 'owner')
  if c[1] == 'open' and c[2] == analyst then
    if (ARGV[9] or '') == '' or ARGV[9] == held then return {held, 'held'} end
  else
    redis.call('DEL', B .. ':holder:' .. analyst)
    held = nil
  end
end
local skips = B .. ':skips:' .. analyst
local function pick(zkey)
  local cands = redis.call('ZREVRANGE', zkey, 0, scan - 1)
  for _, cid in ipairs(cands) do
    if redis.call('SISMEMBER', skips, cid) == 0 then return cid end
  end
  return nil
end
local cid = nil
local wanted = ARGV[9] or ''
if wanted ~= '' then
  local c = redis.call('HMGET', case_key(wanted), 'status', 'owner', 'escalated')
  if c[1] ~= 'open' then return {'no_case', 'error'} end
  if c[2] and c[2] ~= '' then return {'taken', 'error'} end
  if c[3] == '1' and not admin then return {'not_admin', 'error'} end
  if held then
    redis.call('HSET', case_key(held), 'owner', '', 'lease_until', '')
    redis.call('ZREM', B .. ':leases', held)
    redis.call('DEL', B .. ':holder:' .. analyst)
    if redis.call('HGET', case_key(held), 'status') == 'open' then refresh(held, doubling, retention) end
  end
  cid = wanted
else
  if admin then cid = pick(B .. ':escalated') end
  if not cid then cid = pick(B .. ':available') end
  if not cid then return false end
end
local until_ = NOW + lease
redis.call('HSET', case_key(cid), 'owner', analyst, 'lease_until', fmt(until_))
redis.call('ZREM', B .. ':available', cid)
redis.call('ZREM', B .. ':escalated', cid)
redis.call('ZADD', B .. ':leases', until_, cid)
redis.call('SET', B .. ':holder:' .. analyst, cid)
return {cid, 'new'}
"""

#: Give a leased case up.  ARGV: root, now, actor, is admin, case id, mode ('release' | 'skip' | 'escalate' |
#: 'reassign'), target analyst (reassign), lease (s), skip ttl (s), doubling (s), retention (s), audit cutoff (ms).
#: Returns 'ok', or an error code: 'no_case', 'not_holder', 'not_admin'.
HANDOVER = LIBRARY + r"""
local actor, admin, cid, mode, target = ARGV[3], ARGV[4] == '1', ARGV[5], ARGV[6], ARGV[7]
local lease, skip_ttl, doubling, retention, cutoff = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]),
  tonumber(ARGV[11]), ARGV[12]
local ck = case_key(cid)
local c = redis.call('HMGET', ck, 'status', 'owner', 'escalated')
if c[1] ~= 'open' then return 'no_case' end
local owner = c[2] or ''
if mode == 'reassign' then
  if not admin then return 'not_admin' end
elseif owner ~= actor and not (admin and mode == 'release') then
  return 'not_holder'
end
if owner ~= '' and redis.call('GET', B .. ':holder:' .. owner) == cid then
  redis.call('DEL', B .. ':holder:' .. owner)
end
redis.call('ZREM', B .. ':leases', cid)
if mode == 'reassign' then
  local until_ = NOW + lease
  redis.call('HSET', ck, 'owner', target, 'lease_until', fmt(until_), 'escalated', '0')
  redis.call('ZADD', B .. ':leases', until_, cid)
  redis.call('SET', B .. ':holder:' .. target, cid)
  refresh(cid, doubling, retention)
  audit(cutoff, actor, 'reassign', 'case:' .. cid, owner, target, '')
  return 'ok'
end
redis.call('HSET', ck, 'owner', '', 'lease_until', '')
if mode == 'skip' then
  redis.call('SADD', B .. ':skips:' .. actor, cid)
  redis.call('EXPIRE', B .. ':skips:' .. actor, skip_ttl)
elseif mode == 'escalate' then
  redis.call('HSET', ck, 'escalated', '1')
  audit(cutoff, actor, 'escalate', 'case:' .. cid, 'open', 'escalated', '')
end
refresh(cid, doubling, retention)
return 'ok'
"""

#: Verdict on one item (ARGV[6] = transaction id) or on every pending item of a case (ARGV[6] = '').
#: ARGV: root, now, actor, is admin, case id, transaction id, verdict, note, day (YYYY-MM-DD), doubling (s),
#: retention (s), audit cutoff (ms), block ttl (s).
#: Returns {code, resolved count, case still open (0/1)}; code 'ok' or 'unchanged' (nothing pending: a repeated
#: submit), or an error code: 'no_case', 'not_holder', 'not_in_case', 'conflict' (already resolved otherwise).
VERDICT = LIBRARY + r"""
local actor, admin, cid, tid, verdict, note, day = ARGV[3], ARGV[4] == '1', ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local doubling, retention, cutoff, block_ttl = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
local ck = case_key(cid)
local c = redis.call('HMGET', ck, 'status', 'owner')
local targets = {}
if tid ~= '' then
  local f = redis.call('HMGET', item_key(tid), 'case', 'status', 'verdict')
  if f[1] ~= cid then return {'not_in_case', 0, 0} end
  if f[2] == 'resolved' then
    if f[3] == verdict then return {'unchanged', 0, c[1] == 'open' and 1 or 0} end
    return {'conflict', 0, c[1] == 'open' and 1 or 0}
  end
  targets = {tid}
end
if c[1] ~= 'open' then
  if c[1] == 'resolved' then return {'unchanged', 0, 0} end
  return {'no_case', 0, 0}
end
if c[2] ~= actor and not admin then return {'not_holder', 0, 1} end
if tid == '' then targets = redis.call('ZRANGE', items_key(cid), 0, -1) end
if #targets == 0 then return {'unchanged', 0, 1} end
for _, t in ipairs(targets) do
  local f = resolve_item(t, verdict, 'analyst', actor, note, retention, cutoff, '1')
  audit(cutoff, actor, 'verdict', 'item:' .. t, 'pending', verdict, note)
  redis.call('HINCRBY', B .. ':precision', (f.model_version or '') .. '|' .. verdict, 1)
end
redis.call('HINCRBY', B .. ':verdicts:' .. day, actor .. '|' .. verdict, #targets)
redis.call('EXPIRE', B .. ':verdicts:' .. day, retention)
if verdict == 'fraud' and redis.call('EXISTS', ROOT .. ':blocklist:' .. cid) == 0 then
  redis.call('SET', ROOT .. ':blocklist:' .. cid, cjson.encode({since = NOW, by = actor, case = cid}), 'EX', block_ttl)
  redis.call('ZADD', B .. ':blocked', NOW, cid)
  audit(cutoff, actor, 'block', 'card:' .. cid, 'allowed', 'blocked', note)
end
local open = refresh(cid, doubling, retention)
return {'ok', #targets, open}
"""

#: Chargeback labels for pending items resolve them (source chargeback).  ARGV: root, now, doubling (s),
#: retention (s) (each '' = from the config hash), then (transaction id, fraud 0/1) pairs.  Returns the number
#: resolved.
CHARGEBACK = LIBRARY + r"""
local doubling = setting(ARGV[3], 'age_doubling_s', DEFAULTS.age_doubling_s)
local retention = setting(ARGV[4], 'retention_s', DEFAULTS.retention_s)
local cutoff = string.format('%d', (NOW - retention) * 1000)
local n, touched, order = 0, {}, {}
for i = 5, #ARGV, 2 do
  local tid, verdict = ARGV[i], ARGV[i + 1] == '1' and 'fraud' or 'legit'
  local f = redis.call('HMGET', item_key(tid), 'status', 'customer_id')
  if f[1] == 'pending' then
    redis.call('ZREM', ROOT .. ':review:pending', tid)
    resolve_item(tid, verdict, 'chargeback', '', '', retention, cutoff, '0')
    audit(cutoff, 'chargeback', 'verdict', 'item:' .. tid, 'pending', verdict, '')
    n = n + 1
    local cid = f[2]
    if cid and not touched[cid] and redis.call('HGET', case_key(cid), 'status') == 'open' then
      touched[cid] = true; order[#order + 1] = cid
    end
  end
end
for _, cid in ipairs(order) do refresh(cid, doubling, retention) end
return n
"""

#: Take a card off the block list.  ARGV: root, now, actor, customer id, note, audit cutoff (ms).
#: Returns 1 when it was blocked, 0 otherwise.
UNBLOCK = LIBRARY + r"""
local actor, cid, note, cutoff = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local existed = redis.call('DEL', ROOT .. ':blocklist:' .. cid)
redis.call('ZREM', B .. ':blocked', cid)
if existed == 1 then audit(cutoff, actor, 'unblock', 'card:' .. cid, 'blocked', 'allowed', note) end
return existed
"""

#: Fields of a case that the queue shows.
QUEUE_FIELDS = ("customer_id", "status", "opened_at", "sla_due", "items", "amount", "expected_loss", "top_risk",
                "top_reasons", "stages", "models", "owner", "lease_until", "escalated")

#: One page of the queue, filtered in Redis, as one JSON string (one reply to parse instead of one per field).
#: ARGV: root, now, sort index name, ascending (0/1), offset, limit, max scan, stage, model version, min risk.
#: Returns JSON ``{"total": open cases, "scanned": cases looked at, "cases": [{field: value}, ...]}``.
QUEUE_PAGE = LIBRARY + r"""
local index, asc, offset, limit = B .. ':idx:' .. ARGV[3], ARGV[4] == '1', tonumber(ARGV[5]), tonumber(ARGV[6])
local max_scan, stage, model, min_risk = tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
local filtered = stage ~= '' or model ~= '' or min_risk > 0
local FIELDS = {""" + ", ".join(f"'{f}'" for f in QUEUE_FIELDS) + r"""}
local total = redis.call('ZCARD', index)
local out, skipped, scanned = {}, 0, 0
local start = filtered and 0 or offset
local chunk = filtered and 200 or limit
local function has(list, value)
  return string.find(',' .. (list or '') .. ',', ',' .. value .. ',', 1, true) ~= nil
end
while #out < limit and scanned < max_scan and start < total do
  local ids
  if asc then ids = redis.call('ZRANGE', index, start, start + chunk - 1)
  else ids = redis.call('ZREVRANGE', index, start, start + chunk - 1) end
  if #ids == 0 then break end
  for _, cid in ipairs(ids) do
    scanned = scanned + 1
    local v = redis.call('HMGET', case_key(cid), unpack(FIELDS))
    local ok = v[2] == 'open'
    if ok and filtered then
      ok = (stage == '' or has(v[10], stage)) and (model == '' or has(v[11], model))
           and (tonumber(v[8]) or 0) >= min_risk
      if ok and skipped < offset then skipped = skipped + 1; ok = false end
    end
    if ok then
      local row = {}
      for i, name in ipairs(FIELDS) do row[name] = v[i] or '' end
      out[#out + 1] = row
      if #out >= limit then break end
    end
  end
  start = start + chunk
end
if #out == 0 then return cjson.encode({total = total, scanned = scanned, cases = cjson.decode('[]')}) end
return cjson.encode({total = total, scanned = scanned, cases = out})
"""
