//! The Lua scripts that decide in Redis, and the keys they decide on.
//!
//! Every decision is one script run atomically on one limit's keys, all hash-tagged with the
//! limit's name so they live in one Redis Cluster slot, reading the time from `TIME` inside
//! the script: no client clock and no read-compute-write from the client.

use redis::Script;

/// The keys of one limit: `gate:{NAME}:...`, all in the hash slot of `{NAME}`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The GCRA theoretical arrival time, in microseconds of Redis time.
    pub(crate) rate: String,
    /// Present while the limit is paused; its TTL is the pause.
    pub(crate) pause: String,
    /// The token budget's GCRA theoretical arrival time, in microseconds of Redis time.
    pub(crate) tokens: String,
    /// Sorted set of held permits, scored by lease expiry (milliseconds of Redis time).
    pub(crate) held: String,
    /// Sorted set of waiters, scored by arrival ticket.
    pub(crate) queue: String,
    /// Sorted set of waiters, scored by the expiry of their place (milliseconds).
    pub(crate) queue_expiry: String,
    /// The shared concurrency limit set by `set_limit`, when one was.
    pub(crate) limit: String,
    /// The counter that hands out arrival tickets.
    pub(crate) tickets: String,
    /// The pub/sub channel a release is announced on.
    pub(crate) channel: String,
}

impl Keys {
    pub(crate) fn new(name: &str) -> Self {
        let key = |part: &str| format!("gate:{{{name}}}:{part}");
        Self {
            rate: key("rate"),
            pause: key("pause"),
            tokens: key("tokens"),
            held: key("held"),
            queue: key("queue"),
            queue_expiry: key("queue-expiry"),
            limit: key("limit"),
            tickets: key("tickets"),
            channel: key("released"),
        }
    }
}

/// What the acquire script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admitted: the permit (if the limit has a concurrency part) is held under its id.
    Admitted,
    /// Every permit is taken: `ahead` callers are queued before this one, which is now in the
    /// queue if it asked to wait.
    Full { ahead: u64 },
    /// The queue already holds `max_waiters` callers; this one was not queued.
    QueueFull,
    /// The rate admits these cells in this many microseconds at the earliest.
    RateWait { micros: u64 },
    /// The limit is paused for this many more milliseconds.
    Paused { millis: u64 },
    /// The rate can never admit this many cells at once (more than its burst).
    Never,
}

impl Verdict {
    /// Reads the script's `{code, value, limit}` reply; the concurrency limit in force is
    /// returned beside, if the script read it.
    pub(crate) fn from_reply(reply: (i64, i64, i64)) -> (Self, Option<u64>) {
        let (code, value, limit) = reply;
        let value = value.max(0) as u64;
        let verdict = match code {
            0 => Self::Admitted,
            1 => Self::Full { ahead: value },
            2 => Self::QueueFull,
            3 => Self::RateWait { micros: value },
            4 => Self::Paused { millis: value },
            _ => Self::Never,
        };
        (verdict, u64::try_from(limit).ok())
    }
}

/// The GCRA step in Lua, over microseconds: the same arithmetic as gate-core's pure step
/// (`tat`, `now`, `interval`, `tolerance`, `n` cells). Defines `gcra(tat, now, interval,
/// tolerance, n)` returning `0, new_tat` (admitted), `1, wait` or `2, 0` (never).
///
/// Lua numbers are doubles: every value stays below 2^53 because the builder bounds a rate's
/// burst span (see `MAX_RATE_SPAN`) and Redis time in microseconds is about 2^51.
pub(crate) const GCRA_LUA: &str = r"
local function gcra(tat, now, interval, tolerance, n)
  if n <= 0 then return 0, tat end
  local span = (n - 1) * interval
  if span > tolerance then return 2, 0 end
  local earliest = tat + span - tolerance
  if now < earliest then return 1, earliest - now end
  local start = tat
  if now > start then start = now end
  return 0, start + span + interval
end
";

/// The acquire script's body after its clock: `now_us` is defined before it.
///
/// KEYS: rate, pause, tokens, then (with a concurrency part) held, queue, queue-expiry,
/// limit, tickets. ARGV: id, n, interval_us (0: no rate), tolerance_us, default limit (-1: no
/// concurrency), lease_ms, may_wait (0 or 1), max_waiters, idle_ttl_ms, token cells (0:
/// none), token interval_us (0: no budget), token tolerance_us. The request's and the
/// tokens' cells are taken together or not at all.
/// Returns `{code, value, limit}` (see [`Verdict`]).
const ACQUIRE_LUA: &str = r"
local id = ARGV[1]
local n = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local default_limit = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local may_wait = ARGV[7] == '1'
local max_waiters = tonumber(ARGV[8])
local idle = tonumber(ARGV[9])
local token_n = tonumber(ARGV[10])
local token_interval = tonumber(ARGV[11])
local token_tolerance = tonumber(ARGV[12])
local now_ms = math.floor(now_us / 1000)

local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {4, paused, -1} end

local limit = -1
local ticket = false
local stored = false
if default_limit >= 0 then
  stored = redis.call('GET', KEYS[7])
  limit = tonumber(stored or default_limit)
  local held = redis.call('ZCARD', KEYS[4])
  local ahead = redis.call('ZCARD', KEYS[5])
  if ahead > 0 then
    local gone = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now_ms)
    if #gone > 0 then
      redis.call('ZREM', KEYS[5], unpack(gone))
      redis.call('ZREM', KEYS[6], unpack(gone))
    end
    ticket = redis.call('ZSCORE', KEYS[5], id)
    if ticket then
      ahead = redis.call('ZCOUNT', KEYS[5], '-inf', '(' .. ticket)
    else
      ahead = redis.call('ZCARD', KEYS[5])
    end
  end
  if held + ahead >= limit then
    -- Permits of crashed holders stand in the way only when the limit looks full.
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_ms)
    held = redis.call('ZCARD', KEYS[4])
  end
  if held + ahead >= limit then
    -- A place lasts half a lease from its waiter's last look (one every quarter lease): a
    -- crashed waiter's place stands in front of the others no longer than that.
    if ticket then
      redis.call('ZADD', KEYS[6], now_ms + math.floor(lease / 2), id)
      redis.call('PEXPIRE', KEYS[5], 2 * lease)
      redis.call('PEXPIRE', KEYS[6], 2 * lease)
      return {1, ahead, limit}
    end
    if not may_wait then return {1, ahead, limit} end
    if ahead >= max_waiters then return {2, ahead, limit} end
    local seq = redis.call('INCR', KEYS[8])
    redis.call('PEXPIRE', KEYS[8], idle)
    redis.call('ZADD', KEYS[5], seq, id)
    redis.call('ZADD', KEYS[6], now_ms + math.floor(lease / 2), id)
    redis.call('PEXPIRE', KEYS[5], 2 * lease)
    redis.call('PEXPIRE', KEYS[6], 2 * lease)
    return {1, ahead, limit}
  end
  -- A queued caller next in line keeps its place while it waits for the rate.
  if ticket then redis.call('ZADD', KEYS[6], now_ms + math.floor(lease / 2), id) end
end

local rate_tat = false
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
  local code, value = gcra(tat, now_us, interval, tolerance, n)
  if code == 2 then return {5, 0, limit} end
  if code == 1 then return {3, value, limit} end
  rate_tat = value
end
local token_tat = false
if token_interval > 0 and token_n > 0 then
  local tat = tonumber(redis.call('GET', KEYS[3]) or 0)
  local code, value = gcra(tat, now_us, token_interval, token_tolerance, token_n)
  if code == 2 then return {5, 0, limit} end
  if code == 1 then return {3, value, limit} end
  token_tat = value
end
if rate_tat then
  redis.call('SET', KEYS[1], string.format('%.0f', rate_tat), 'PX', math.floor((rate_tat - now_us) / 1000) + 1)
end
if token_tat then
  redis.call('SET', KEYS[3], string.format('%.0f', token_tat), 'PX', math.floor((token_tat - now_us) / 1000) + 1)
end

if default_limit >= 0 then
  redis.call('ZADD', KEYS[4], now_ms + lease, id)
  redis.call('PEXPIRE', KEYS[4], 2 * lease)
  if ticket then
    redis.call('ZREM', KEYS[5], id)
    redis.call('ZREM', KEYS[6], id)
  end
  if stored then redis.call('PEXPIRE', KEYS[7], idle) end
end
return {0, 0, limit}
";

/// Reads the clock from Redis: the only clock any decision uses.
const REDIS_CLOCK: &str = r"
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
";

/// The acquire script: pause, then a permit in arrival order, then rate cells and token
/// cells, all or nothing.
pub(crate) fn acquire() -> Script {
    Script::new(&format!("{GCRA_LUA}{REDIS_CLOCK}{ACQUIRE_LUA}"))
}

/// The GCRA step alone on a clock given as `ARGV[1]`, for testing the Lua arithmetic
/// against the pure step: KEYS: rate; ARGV: now_us, interval_us, tolerance_us, n. Returns
/// `{code, value}` and stores the new TAT on admission.
#[cfg(test)]
pub(crate) fn gcra_at() -> Script {
    Script::new(&format!(
        "{GCRA_LUA}
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
local code, value = gcra(tat, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if code == 0 then redis.call('SET', KEYS[1], string.format('%.0f', value)) end
return {{code, string.format('%.0f', value)}}
"
    ))
}

/// Settles a token reservation: charges `ARGV[1]` more cells (a positive count: used beyond
/// the reservation, owed from now on) or gives `-ARGV[1]` back (a negative one: reserved and
/// not used). The state's TTL follows the new theoretical arrival time; a state refunded
/// into the past is a full bucket and is deleted.
///
/// KEYS: tokens. ARGV: cells, token interval_us. Returns 1.
pub(crate) fn settle() -> Script {
    Script::new(&format!(
        "{REDIS_CLOCK}
local cells = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
local next
if cells >= 0 then
  local start = tat
  if now_us > start then start = now_us end
  next = start + cells * interval
else
  next = tat + cells * interval
end
if next <= now_us then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.floor((next - now_us) / 1000) + 1)
end
return 1
"
    ))
}

/// Lowers the free cells of the request rate and of the token budget to at most what a
/// server said remains (never raises them): the theoretical arrival time at which exactly
/// that many fit now, if it is later than the stored one.
///
/// KEYS: rate, tokens. ARGV: requests remaining (-1: unknown), rate interval_us, rate
/// tolerance_us, tokens remaining (-1: unknown), token interval_us, token tolerance_us.
pub(crate) fn observe() -> Script {
    Script::new(&format!(
        "{REDIS_CLOCK}
local function lower(key, remaining, interval, tolerance)
  if remaining < 0 or interval <= 0 then return end
  if remaining >= math.floor(tolerance / interval) + 1 then return end
  local target = now_us + tolerance + interval - remaining * interval
  local tat = tonumber(redis.call('GET', key) or 0)
  if target > tat then
    redis.call('SET', key, string.format('%.0f', target), 'PX', math.floor((target - now_us) / 1000) + 1)
  end
end
lower(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
lower(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
return 1
"
    ))
}

/// Releases permits or waiters' places, and wakes the waiters if it freed anything while
/// someone waits (nobody is woken for nothing: a caller that finds the limit full is queued
/// by the same script that refuses it, so it is in the queue before any later release).
///
/// KEYS: held, queue, queue-expiry. ARGV: channel, then the ids (at most
/// [`RELEASE_BATCH`]). Returns how many entries it removed.
pub(crate) fn release() -> Script {
    Script::new(
        r"
local ids = {unpack(ARGV, 2)}
local removed = redis.call('ZREM', KEYS[1], unpack(ids))
if redis.call('ZCARD', KEYS[2]) > 0 then
  removed = removed + redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[3], unpack(ids))
  if removed > 0 then redis.call('PUBLISH', ARGV[1], '1') end
end
return removed
",
    )
}

/// The most ids one release call carries; the background task sends releases that arrive
/// together in calls of up to this many.
pub(crate) const RELEASE_BATCH: usize = 64;

/// Renews the leases of permits still held, and names those that were lost.
///
/// KEYS: held. ARGV: lease_ms, then the ids. Returns the ids whose lease had already
/// expired or was removed.
pub(crate) fn renew() -> Script {
    Script::new(&format!(
        "{REDIS_CLOCK}
local now_ms = math.floor(now_us / 1000)
local lease = tonumber(ARGV[1])
local lost = {{}}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now_ms then
    redis.call('ZADD', KEYS[1], 'XX', now_ms + lease, ARGV[i])
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    table.insert(lost, ARGV[i])
  end
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], 2 * lease) end
return lost
"
    ))
}

/// Pauses the limit for `ARGV[1]` milliseconds, unless it is already paused for longer.
///
/// KEYS: pause. Returns the pause now in force, in milliseconds.
pub(crate) fn pause() -> Script {
    Script::new(
        r"
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  return ms
end
return left
",
    )
}

/// Sets the shared concurrency limit and wakes the waiters, who may now fit.
///
/// KEYS: limit. ARGV: limit, idle_ttl_ms, channel.
pub(crate) fn set_limit() -> Script {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], '1')
return 1
",
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::support;

    /// gate-core's pure GCRA step (`gate_core::rate::Gcra::step`, on the h11 branch), copied
    /// here until it is merged: what the Lua step must answer for the same inputs.
    fn step(tat: u64, now: u64, interval: u64, tolerance: u64, n: u64) -> (i64, u64) {
        if n == 0 {
            return (0, tat);
        }
        let span = (n as u128 - 1) * interval as u128;
        if span > tolerance as u128 {
            return (2, 0);
        }
        let earliest = (tat as u128 + span).saturating_sub(tolerance as u128) as u64;
        if now < earliest {
            return (1, earliest - now);
        }
        (0, (tat.max(now) as u128 + span + interval as u128) as u64)
    }

    /// One step of a sequence: time moves on by `advance` microseconds (or, when `whole`,
    /// by `advance % 3` intervals, so that cells fall due exactly), `n` cells are asked.
    fn steps() -> impl Strategy<Value = Vec<(bool, u64, u64)>> {
        prop::collection::vec((any::<bool>(), 0..400_000_u64, 0..6_u64), 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn the_lua_step_agrees_with_the_pure_step(
            interval in 1..200_000_u64,
            burst in 1..8_u64,
            sequence in steps(),
        ) {
            let tolerance = interval * (burst - 1);
            let server = support::server();
            let mut conn = server.connection();
            let key = support::key(&format!("gcra-{interval}-{burst}-{}", sequence.len()));
            let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
            let script = gcra_at();
            // Redis time is about 2^51 microseconds: start there.
            let mut now = 1_764_000_000_000_000_u64;
            let mut tat = 0;
            for (whole, advance, n) in sequence {
                now += if whole { advance % 3 * interval } else { advance };
                let (code, value): (i64, String) = script
                    .key(&key)
                    .arg(now)
                    .arg(interval)
                    .arg(tolerance)
                    .arg(n)
                    .invoke(&mut conn)
                    .unwrap();
                let value: u64 = value.parse().unwrap();
                let expected = step(tat, now, interval, tolerance, n);
                prop_assert_eq!((code, value), expected, "tat {} now {} n {}", tat, now, n);
                if code == 0 {
                    tat = value;
                }
            }
        }
    }
}
