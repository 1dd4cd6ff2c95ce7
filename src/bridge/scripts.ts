/**
 * Lua run inside Redis. Each script touches only keys of one channel (one hash tag), so it is atomic
 * on a single Redis and on a Cluster alike. The publish script is the one authority for a channel's
 * order: it assigns the offset, appends to the stream and fans out, in one step, so every host sees
 * the same publications with the same offsets in the same order.
 *
 * Frames on a channel's pub/sub channel:
 *   `<offset>|<epoch>|<msgpack body>`   a publication
 *   `j|<json>` / `l|<json>`             a presence join / leave: {"u": user, "i": info, "x": excluded socket}
 *   `s|<total>`                         the cluster-wide subscriber count changed (announced channels only)
 */

/**
 * KEYS: meta, stream[, claim]   ARGV: pubsub channel, epoch candidate, history size, history ttl ms,
 * meta ttl ms, body, PUBLISH|SPUBLISH[, claim ttl ms]. Returns {offset, epoch}, or nil when the claim
 * was already taken (another host sequenced this backend message).
 */
/** The body shared by PUBLISH and FENCED_PUBLISH; `meta` and `stream` are Lua expressions naming the keys. */
const publishBody = (meta: string, stream: string) => `
redis.call('HSETNX', ${meta}, 'e', ARGV[2])
local e = redis.call('HGET', ${meta}, 'e')
local o = redis.call('HINCRBY', ${meta}, 'o', 1)
redis.call('PEXPIRE', ${meta}, ARGV[5])
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('XADD', ${stream}, 'MAXLEN', '~', size, '*', 'o', o, 'm', ARGV[6])
  local t = redis.call('TIME')
  local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[4])
  if cutoff > 0 then redis.call('XTRIM', ${stream}, 'MINID', '~', cutoff) end
  redis.call('PEXPIRE', ${stream}, ARGV[4])
end
redis.call(ARGV[7], ARGV[1], o .. '|' .. e .. '|' .. ARGV[6])
return {o, e}
`;

export const PUBLISH = `
if #KEYS > 2 then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[8]) then return false end
end
` + publishBody('KEYS[1]', 'KEYS[2]');

/**
 * KEYS: meta   ARGV: epoch candidate, meta ttl ms[, delivered offset, delivered epoch]. Creates the
 * channel's epoch if it has none (first use, or Redis lost it) and returns {offset, epoch}. With a
 * delivered position under the current epoch but past its offset (a failover lost the old master's last
 * writes, and the new master reuses their offsets), the candidate becomes the epoch: a client holding one
 * of the lost offsets then resumes with `recovered: false` instead of into publications it never saw.
 * Only the first host to notice changes it; the others find it changed.
 */
export const POSITION = `
redis.call('HSETNX', KEYS[1], 'e', ARGV[1])
redis.call('HSETNX', KEYS[1], 'o', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] and redis.call('HGET', KEYS[1], 'e') == ARGV[4] and tonumber(redis.call('HGET', KEYS[1], 'o')) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'e', ARGV[1])
end
return redis.call('HMGET', KEYS[1], 'o', 'e')
`;

/**
 * KEYS: stream, meta   ARGV: after, up to (-1 = current), ttl ms, size. Returns {1, entries newest first}
 * when every publication in (after, upTo] is still kept (entries may extend past upTo), {0} when some is
 * not, or when `after` is past the channel's last offset (a position no stream entry can vouch for: e.g.
 * publications a failed-over master acknowledged and lost, whose offsets the new master reuses). An
 * `after` past `upTo` but not past the last offset is a client ahead of the caller's relay: nothing is
 * missed. Trimming is approximate (MAXLEN ~ works by whole stream nodes), so the bounds are applied here
 * exactly: entries older than the ttl, or more than `size` behind the newest, count as gone.
 */
export const HISTORY = `
local after = tonumber(ARGV[1])
local upto = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[2], 'o') or '0')
if after > cur then return {0} end
if upto < 0 or upto > cur then upto = cur end
if after >= upto then return {1, {}} end
if cur - after > tonumber(ARGV[4]) then return {0} end
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
if cutoff < 0 then cutoff = 0 end
local first = redis.call('XRANGE', KEYS[1], cutoff, '+', 'COUNT', 1)
if #first == 0 or tonumber(first[1][2][2]) > after + 1 then return {0} end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local count = tonumber(newest[1][2][2]) - after
if count <= 0 then return {1, {}} end
return {1, redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', count)}
`;

/** KEYS: stream   ARGV: count (at most the history size), ttl ms. The newest entries younger than the ttl, newest first. */
export const LATEST = `
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
if cutoff < 0 then cutoff = 0 end
return redis.call('XREVRANGE', KEYS[1], '+', cutoff, 'COUNT', tonumber(ARGV[1]))
`;

/**
 * KEYS: members, users   ARGV: node|user, info json, user, pubsub channel, PUBLISH|SPUBLISH, join frame.
 * The join is announced only when the user was on no node before: one join per user cluster-wide.
 * Returns 0 (this node already held the user), 1 (added) or 2 (added and announced: the user's first
 * node anywhere, so the caller sends member_added).
 */
export const JOIN = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[3], 1) == 1 then
  redis.call(ARGV[5], ARGV[4], ARGV[6])
  return 2
end
return 1
`;

/**
 * KEYS: members, users   ARGV: node|user, user, pubsub channel, PUBLISH|SPUBLISH. Returns 0 (not
 * held here), 1 (removed) or 2 (removed and announced: the user's last node, so the caller sends
 * member_removed).
 */
export const LEAVE = `
local info = redis.call('HGET', KEYS[1], ARGV[1])
if not info then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call(ARGV[4], ARGV[3], 'l|{"u":' .. cjson.encode(ARGV[2]) .. ',"i":' .. info .. '}')
  return 2
end
return 1
`;

/**
 * KEYS: counts   ARGV: node, subscribers (0 forgets the node), pubsub channel, PUBLISH|SPUBLISH,
 * announce ('1', '0', or '2': also an unchanged total, for a host that may have missed it). Sets this node's subscriber count of the channel and decides, in the same
 * atomic step, whether the cluster-wide total crossed zero: returns 1 when it went from 0 to more
 * (channel_occupied), -1 when it went to 0 (channel_vacated), 0 otherwise. Every host's update goes
 * through here, so exactly one of them sees each transition. With announce, a changed non-zero total is
 * published on the channel (`s|<total>`) in the same step, so every host sees the totals in the order
 * the updates happened and the last one it sees is the current one.
 */
export const COUNT = `
local before = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do before = before + (tonumber(v) or 0) end
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local n = tonumber(ARGV[2]) or 0
if n > 0 then redis.call('HSET', KEYS[1], ARGV[1], n) else redis.call('HDEL', KEYS[1], ARGV[1]); n = 0 end
local after = before - old + n
if ARGV[5] ~= '0' and after > 0 and (after ~= before or ARGV[5] == '2') then redis.call(ARGV[4], ARGV[3], 's|' .. after) end
if before <= 0 and after > 0 then return 1 end
if before > 0 and after <= 0 then return -1 end
return 0
`;

/**
 * KEYS: members, users, counts   ARGV: '<node>|', node, pubsub channel, PUBLISH|SPUBLISH, announce.
 * Removes a dead node from one channel: its members leave (announced when it was their last node)
 * and its subscribers stop counting (with announce '1', a non-zero new total is published, as COUNT
 * does). Idempotent, so several sweepers racing do no harm: only the one that actually removed
 * something sees a transition.
 * Returns {members removed, 1 when the cluster-wide subscriber count went to 0 (else 0), users whose
 * last node this was…}: the caller sends channel_vacated and member_removed for exactly those.
 */
export const SWEEP = `
local all = redis.call('HGETALL', KEYS[1])
local prefix = ARGV[1]
local plen = #prefix
local gone = 0
local left = {}
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, plen) == prefix then
    local user = string.sub(f, plen + 1)
    redis.call('HDEL', KEYS[1], f)
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      redis.call(ARGV[4], ARGV[3], 'l|{"u":' .. cjson.encode(user) .. ',"i":' .. all[i + 1] .. '}')
      left[#left + 1] = user
    end
    gone = gone + 1
  end
end
local vacated = 0
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0') or 0
if redis.call('HDEL', KEYS[3], ARGV[2]) == 1 and old > 0 then
  local after = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[3])) do after = after + (tonumber(v) or 0) end
  if after <= 0 then vacated = 1
  elseif ARGV[5] == '1' then redis.call(ARGV[4], ARGV[3], 's|' .. after) end
end
local out = {gone, vacated}
for _, u in ipairs(left) do out[#out + 1] = u end
return out
`;

/**
 * Leases (src/bridge/lease.ts). A lease is a hash `{h: holder, e: epoch}` with a ttl; the fencing
 * counter (its own key, same hash tag) gives every new holder a larger epoch. A holder proves itself
 * with (holder, epoch): equality on both, so neither a stale holder nor a new incarnation of the same
 * host can pass for the other.
 *
 * KEYS: lease, fence   ARGV: holder, ttl ms, fence ttl ms.
 * Returns {1, epoch, holder, ttl} when the caller holds the lease (newly or already), else
 * {0, epoch, holder, remaining ttl} naming the current holder.
 */
export const LEASE_ACQUIRE = `
local cur = redis.call('HMGET', KEYS[1], 'h', 'e')
if cur[1] then
  if cur[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(cur[2]), cur[1], tonumber(ARGV[2])}
  end
  return {0, tonumber(cur[2]), cur[1], redis.call('PTTL', KEYS[1])}
end
local e = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'e', e)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, e, ARGV[1], tonumber(ARGV[2])}
`;

/** Lua prelude of every fenced write: KEYS[1] is the lease, the last two ARGV are holder and epoch. */
const FENCE_CHECK = `
local fh = ARGV[#ARGV - 1]
local fe = ARGV[#ARGV]
local cur = redis.call('HMGET', KEYS[1], 'h', 'e')
if cur[1] ~= fh or cur[2] ~= fe then return redis.error_reply('FENCED lease of ' .. KEYS[1] .. ' is not held by ' .. fh .. ' at epoch ' .. fe) end
`;

/** KEYS: lease   ARGV: ttl ms, holder, epoch. Extends the lease; FENCED when it is not ours any more. */
export const LEASE_RENEW = FENCE_CHECK + `
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`;

/** KEYS: lease   ARGV: holder, epoch. Ends the lease at once (hand-over); 0 when it was not ours. */
export const LEASE_RELEASE = `
local cur = redis.call('HMGET', KEYS[1], 'h', 'e')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`;

/** KEYS: lease, state   ARGV: state bytes, state ttl ms, holder, epoch. Persists an actor's state, fenced. */
export const STATE_SAVE = FENCE_CHECK + `
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
`;

/**
 * KEYS: lease, meta, stream   ARGV: as PUBLISH (pubsub channel … PUBLISH|SPUBLISH), holder, epoch.
 * The publish of a lease holder: refused with FENCED unless the lease is still the caller's, in the same
 * atomic step that assigns the offset — a paused or cut-off former owner can never publish.
 */
export const FENCED_PUBLISH = FENCE_CHECK + publishBody('KEYS[2]', 'KEYS[3]');

/**
 * KEYS: lease, meta, stream, state   ARGV: as PUBLISH (7), state bytes, state ttl ms, holder, epoch.
 * One turn of a placed actor that changed its state and published: both, or neither (fenced).
 */
export const FENCED_PUBLISH_STATE = FENCE_CHECK + `
redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[9])
` + publishBody('KEYS[2]', 'KEYS[3]');

/**
 * KEYS: timers index   ARGV: channel, score. Removes the channel from the index of pending timers only
 * while its score is the one the caller wrote or read: a newer owner's entry (another due) stays.
 */
export const TIMERS_UNINDEX = `
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`;
