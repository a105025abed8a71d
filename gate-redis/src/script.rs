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
    /// `0` while the queue is known empty, `1` while it may hold waiters; it lives a lease,
    /// and while it lives the held set's and the stored limit's TTLs need no renewal.
    pub(crate) state: String,
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
            state: key("state"),
            channel: key("released"),
        }
    }
}

/// `text` with `%`, `{` and `}` percent-encoded: no hash tag can open or close in it, and
/// two different texts stay different.
pub(crate) fn escape(text: &str) -> String {
    if !text.contains(['%', '{', '}']) {
        return text.to_owned();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// What the acquire script answered, and what it saw of the limit on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) verdict: Verdict,
    /// The concurrency limit in force, if the script read it.
    pub(crate) limit: Option<u64>,
    /// Permits held in Redis (this admission's included), if the script counted them.
    pub(crate) held: Option<u64>,
    /// Callers queued in Redis, if the script counted them.
    pub(crate) waiting: Option<u64>,
    /// Rate cells free after this decision, if the script checked the rate.
    pub(crate) rate_free: Option<u64>,
    /// Token cells free after this decision, if the script checked the budget.
    pub(crate) tokens_free: Option<u64>,
}

/// What the acquire script decided.
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

impl Reply {
    /// Reads the script's reply for a limiter with `plan`: one integer for an uncontended
    /// admission (the permits held, this one's included, for a concurrency limit at its
    /// configured value with nobody queued; else the rate's free cells), or `{code, value,
    /// limit, held, waiting, rate free, tokens free}`, of which only the first two are
    /// always there; a negative or missing entry is one the script did not read.
    pub(crate) fn parse(reply: &redis::Value, plan: &Plan) -> Self {
        let mut entries = [-1_i64; 7];
        match reply {
            redis::Value::Int(n) => {
                let n = u64::try_from(*n).ok();
                return match plan.concurrency {
                    Some(limit) => Self {
                        verdict: Verdict::Admitted,
                        limit: Some(limit),
                        held: n,
                        waiting: Some(0),
                        rate_free: None,
                        tokens_free: None,
                    },
                    None => Self {
                        verdict: Verdict::Admitted,
                        limit: None,
                        held: None,
                        waiting: None,
                        rate_free: n,
                        tokens_free: None,
                    },
                };
            }
            redis::Value::Array(values) => {
                for (entry, value) in entries.iter_mut().zip(values) {
                    if let redis::Value::Int(n) = value {
                        *entry = *n;
                    }
                }
            }
            _ => {}
        }
        let at = |i: usize| u64::try_from(entries[i]).ok();
        let value = at(1).unwrap_or(0);
        let verdict = match entries[0] {
            0 => Verdict::Admitted,
            1 => Verdict::Full { ahead: value },
            2 => Verdict::QueueFull,
            3 => Verdict::RateWait { micros: value },
            4 => Verdict::Paused { millis: value },
            _ => Verdict::Never,
        };
        Self {
            verdict,
            limit: at(2),
            held: at(3),
            waiting: at(4),
            rate_free: at(5),
            tokens_free: at(6),
        }
    }
}

/// The GCRA step in Lua, over microseconds: the same arithmetic as gate-core's pure step
/// (`tat`, `now`, `interval`, `tolerance`, `n` cells). Defines `gcra(tat, now, interval,
/// tolerance, n)` returning `0, new_tat` (admitted), `1, wait` or `2, 0` (never), and
/// `free(tat, now, interval, tolerance)`, the cells free at `now` (gate-core's
/// `RateLimit::remaining`, before the cap at the burst, which `tolerance` already is).
///
/// Lua numbers are doubles: every value stays below 2^53 because the builder bounds a rate's
/// burst span (see `MAX_RATE_SPAN`) and Redis time in microseconds is about 2^51. The
/// interval may have a fraction of a microsecond (it is kept in nanoseconds, and
/// `tolerance` is a whole number of intervals, computed alike): the new TAT and the wait
/// are rounded up to whole microseconds, once for all `n` cells, so every value written is
/// a whole number (writing it with `%d`, as the acquire script does, is exact) and
/// rounding never lets the rate run fast. With whole intervals nothing is rounded.
pub(crate) const GCRA_LUA: &str = r"
local function gcra(tat, now, interval, tolerance, n)
  if n <= 0 then return 0, tat end
  local span = (n - 1) * interval
  if span > tolerance then return 2, 0 end
  local earliest = tat + span - tolerance
  if now < earliest then return 1, math.ceil(earliest - now) end
  local start = tat
  if now > start then start = now end
  return 0, math.ceil(start + span + interval)
end
local function free(tat, now, interval, tolerance)
  local room = now + tolerance - tat
  if room < 0 then return 0 end
  local cells = math.floor(room / interval) + 1
  -- A whole number of intervals, which a division of doubles may miss by a hair.
  local burst = math.floor(tolerance / interval + 0.5) + 1
  if cells > burst then return burst end
  return cells
end
";

/// What one limiter's admissions decide on. It is written into the acquire script's text,
/// so that a call carries only what changes from one call to the next (each argument costs
/// the script time to read); limiters configured alike share one script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The rate's interval and tolerance, in nanoseconds.
    pub(crate) rate: Option<(u64, u64)>,
    /// The token budget's interval and tolerance, in nanoseconds.
    pub(crate) tokens: Option<(u64, u64)>,
    /// The concurrency limit used while Redis holds none set by `set_limit`.
    pub(crate) concurrency: Option<u64>,
    pub(crate) lease_ms: u64,
    pub(crate) idle_ms: u64,
}

/// The acquire script's keys, by their names in its Lua, in the order they are passed.
const KEY_NAMES: [&str; 9] = [
    "k_pause",
    "k_rate",
    "k_tokens",
    "k_held",
    "k_queue",
    "k_queue_expiry",
    "k_limit",
    "k_tickets",
    "k_state",
];

/// What the acquire script reads with its one `MGET`, by the names of their keys.
const READ_NAMES: [&str; 5] = ["k_pause", "k_limit", "k_state", "k_rate", "k_tokens"];

/// One limiter's acquire script: the pause, then a permit in arrival order, then rate cells
/// and token cells, all or nothing.
///
/// KEYS: pause, then rate (with a rate), tokens (with a budget), then held, queue,
/// queue-expiry, limit, tickets and state (with a concurrency limit). ARGV: with a
/// concurrency limit, the id and how many may be queued ahead for this caller to join the
/// queue (0: it may not wait); then, with a budget, the token cells (0: none). Returns what
/// [`Reply::parse`] reads.
///
/// An uncontended admission reads the clock (`TIME`), reads the pause, the stored limit,
/// the state and the buckets with one `MGET`, counts the held permits, and writes the permit
/// and the buckets; it answers with one integer. The rest is done only when it can matter:
/// the queue is read only while the state says it may hold waiters (the state is `0` only
/// while the queue is known empty: joining the queue sets it to `1`), expired permits are
/// swept only when the limit looks full, and the held set's and the stored limit's TTLs are
/// renewed (and the state written again) only when the state has lapsed, once a lease: while
/// it lives, the held set has more than a lease left.
#[derive(Debug, Clone)]
pub(crate) struct Acquire {
    script: Script,
    plan: Plan,
}

impl Acquire {
    pub(crate) fn new(plan: Plan) -> Self {
        // Microseconds, as Lua computes them from nanoseconds: a tolerance of whole intervals.
        let lua = |(interval, tolerance): (u64, u64)| (interval, tolerance / interval.max(1));
        let (interval, cells) = plan.rate.map_or((0, 0), lua);
        let (token_interval, token_cells) = plan.tokens.map_or((0, 0), lua);
        let passed: Vec<&str> = KEY_NAMES
            .into_iter()
            .filter(|name| match *name {
                "k_pause" => true,
                "k_rate" => plan.rate.is_some(),
                "k_tokens" => plan.tokens.is_some(),
                _ => plan.concurrency.is_some(),
            })
            .collect();
        let slot = |list: &[&str], name: &str, table: &str| {
            list.iter()
                .position(|n| *n == name)
                .map_or_else(|| String::from("false"), |i| format!("{table}[{}]", i + 1))
        };
        let mut prelude = String::new();
        for name in KEY_NAMES {
            prelude.push_str(&format!("local {name} = {}\n", slot(&passed, name, "KEYS")));
        }
        // One MGET for the pause, the stored limit, the state and the buckets.
        let read: Vec<&str> = READ_NAMES
            .into_iter()
            .filter(|name| passed.contains(name))
            .collect();
        prelude.push_str(&format!(
            "local stored = redis.call('MGET', {})\n",
            read.join(", ")
        ));
        for name in READ_NAMES {
            let value = slot(&read, name, "stored");
            prelude.push_str(&format!("local s_{} = {value}\n", &name[2..]));
        }
        let default_limit = plan
            .concurrency
            .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        // Only a rate or a budget needs microseconds, and the GCRA step.
        let (gcra, clock) = if plan.rate.is_some() || plan.tokens.is_some() {
            (
                GCRA_LUA,
                "local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now_us / 1000)",
            )
        } else {
            (
                "",
                "local now_us = false
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)",
            )
        };
        let text = format!(
            "{gcra}
local interval, token_interval = {interval} / 1000, {token_interval} / 1000
local tolerance, token_tolerance = {cells} * interval, {token_cells} * token_interval
local default_limit, lease, idle = {default_limit}, {lease}, {idle}
local lease_ttl, held_ttl, idle_ttl = '{lease}', '{held_ttl}', '{idle}'
local fmt = string.format
local time = redis.call('TIME')
{clock}
{prelude}{ACQUIRE_LUA}",
            lease = plan.lease_ms,
            held_ttl = plan.lease_ms.saturating_mul(2),
            idle = plan.idle_ms,
        );
        Self {
            script: Script::new(&text),
            plan,
        }
    }

    /// What the script decides on.
    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The script, for loading it on `NOSCRIPT`.
    pub(crate) fn script(&self) -> &Script {
        &self.script
    }

    /// The `EVALSHA` that admits `id` on `keys`, with `tokens` token cells, written into
    /// one buffer sized for it (a [`redis::ScriptInvocation`] makes a buffer per key and per
    /// argument, then copies them into a command).
    pub(crate) fn command(
        &self,
        keys: &Keys,
        id: &str,
        may_wait: bool,
        max_waiters: usize,
        tokens: u64,
    ) -> redis::Cmd {
        let mut passed: [&str; KEY_NAMES.len()] = [&keys.pause, "", "", "", "", "", "", "", ""];
        let mut count = 1;
        for (key, used) in [
            (&keys.rate, self.plan.rate.is_some()),
            (&keys.tokens, self.plan.tokens.is_some()),
        ] {
            if used {
                passed[count] = key;
                count += 1;
            }
        }
        if self.plan.concurrency.is_some() {
            for key in [
                &keys.held,
                &keys.queue,
                &keys.queue_expiry,
                &keys.limit,
                &keys.tickets,
                &keys.state,
            ] {
                passed[count] = key;
                count += 1;
            }
        }
        let passed = &passed[..count];
        // `EVALSHA`, the hash, the key count, the keys, the id and two numbers.
        let size = 7 + 40 + 2 + passed.iter().map(|key| key.len()).sum::<usize>() + 80 + id.len();
        let mut command = redis::Cmd::with_capacity(3 + count + 3, size);
        command
            .arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(count);
        for key in passed {
            command.arg(*key);
        }
        if self.plan.concurrency.is_some() {
            command.arg(id).arg(if may_wait { max_waiters } else { 0 });
        }
        if self.plan.tokens.is_some() {
            command.arg(tokens);
        }
        command
    }
}

/// The acquire script's body after its prelude (the plan, the clock, the keys and what the
/// `MGET` read); see [`Acquire`].
const ACQUIRE_LUA: &str = r"
if s_pause then
  local pause_until = tonumber(s_pause)
  if pause_until > now_ms then return {4, pause_until - now_ms} end
end

local limit, held, queued = -1, -1, -1
local id = false
local ticket = false
if default_limit >= 0 then
  id = ARGV[1]
  limit = tonumber(s_limit or default_limit)
  held = redis.call('ZCARD', k_held)
  queued = 0
  -- The queue is read only while it may hold waiters, or the state lapsed.
  if s_state ~= '0' then queued = redis.call('ZCARD', k_queue) end
  local ahead = queued
  if queued > 0 then
    local gone = redis.call('ZRANGEBYSCORE', k_queue_expiry, '-inf', now_ms)
    if #gone > 0 then
      redis.call('ZREM', k_queue, unpack(gone))
      redis.call('ZREM', k_queue_expiry, unpack(gone))
      queued = redis.call('ZCARD', k_queue)
    end
    ticket = redis.call('ZSCORE', k_queue, id)
    if ticket then
      ahead = redis.call('ZCOUNT', k_queue, '-inf', '(' .. ticket)
    else
      ahead = queued
    end
  end
  if held + ahead >= limit then
    -- Permits of crashed holders stand in the way only when the limit looks full.
    redis.call('ZREMRANGEBYSCORE', k_held, '-inf', now_ms)
    held = redis.call('ZCARD', k_held)
  end
  if held + ahead >= limit then
    -- A place lasts half a lease from its waiter's last look (one every quarter lease): a
    -- crashed waiter's place stands in front of the others no longer than that.
    if ticket then
      redis.call('ZADD', k_queue_expiry, now_ms + math.floor(lease / 2), id)
      redis.call('PEXPIRE', k_queue, held_ttl)
      redis.call('PEXPIRE', k_queue_expiry, held_ttl)
      return {1, ahead, limit, held, queued}
    end
    local max_waiters = tonumber(ARGV[2])
    if max_waiters == 0 then return {1, ahead, limit, held, queued} end
    if ahead >= max_waiters then return {2, ahead, limit, held, queued} end
    local seq = redis.call('INCR', k_tickets)
    redis.call('PEXPIRE', k_tickets, idle_ttl)
    redis.call('ZADD', k_queue, seq, id)
    redis.call('ZADD', k_queue_expiry, now_ms + math.floor(lease / 2), id)
    redis.call('PEXPIRE', k_queue, held_ttl)
    redis.call('PEXPIRE', k_queue_expiry, held_ttl)
    -- The queue may hold waiters from now on: the next admissions read it.
    if s_state == '0' then redis.call('SET', k_state, '1', 'XX', 'KEEPTTL') end
    return {1, ahead, limit, held, queued + 1}
  end
  -- A queued caller next in line keeps its place while it waits for the rate.
  if ticket then redis.call('ZADD', k_queue_expiry, now_ms + math.floor(lease / 2), id) end
end

local rate_tat, rate_free = false, -1
if interval > 0 then
  local tat = tonumber(s_rate or 0)
  local code, value = gcra(tat, now_us, interval, tolerance, 1)
  if code == 2 then return {5, 0, limit, held, queued, 0} end
  if code == 1 then return {3, value, limit, held, queued, 0} end
  rate_tat = value
  rate_free = free(value, now_us, interval, tolerance)
end
local token_tat, token_free = false, -1
local token_n = 0
if token_interval > 0 then token_n = tonumber(ARGV[#ARGV]) end
if token_n > 0 then
  local tat = tonumber(s_tokens or 0)
  local code, value = gcra(tat, now_us, token_interval, token_tolerance, token_n)
  local left = free(tat, now_us, token_interval, token_tolerance)
  if code == 2 then return {5, 0, limit, held, queued, rate_free, left} end
  if code == 1 then return {3, value, limit, held, queued, rate_free, left} end
  token_tat = value
  token_free = free(value, now_us, token_interval, token_tolerance)
end
-- The numbers written are formatted here, with `%d`: Redis 7.0 formats a number handed to
-- `redis.call` with `%.17g`, 0.2-0.4 us more a number.
if rate_tat then
  local px = math.floor((rate_tat - now_us) / 1000) + 1
  redis.call('SET', k_rate, fmt('%d', rate_tat), 'PX', fmt('%d', px))
end
if token_tat then
  local px = math.floor((token_tat - now_us) / 1000) + 1
  redis.call('SET', k_tokens, fmt('%d', token_tat), 'PX', fmt('%d', px))
end

if default_limit >= 0 then
  redis.call('ZADD', k_held, fmt('%d', now_ms + lease), id)
  -- A new set has no TTL; a live one has more than a lease left while the state lives.
  if held == 0 or not s_state then redis.call('PEXPIRE', k_held, held_ttl) end
  held = held + 1
  if ticket then
    redis.call('ZREM', k_queue, id)
    redis.call('ZREM', k_queue_expiry, id)
    queued = queued - 1
  end
  if not s_state then
    if s_limit then redis.call('PEXPIRE', k_limit, idle_ttl) end
    local state = '0'
    if queued > 0 then state = '1' end
    redis.call('SET', k_state, state, 'PX', lease_ttl)
  elseif s_state == '1' and queued == 0 then
    redis.call('SET', k_state, '0', 'XX', 'KEEPTTL')
  end
  if not s_limit and queued == 0 and interval == 0 and token_interval == 0 then
    return held
  end
elseif token_interval == 0 then
  return rate_free
end
return {0, 0, limit, held, queued, rate_free, token_free}
";

/// Reads the clock from Redis: the only clock any decision uses.
const REDIS_CLOCK: &str = r"
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
";

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
/// KEYS: tokens. ARGV: cells, token interval_ns. Returns 1. The new TAT is rounded up to
/// a whole microsecond (a refund gives back less than a microsecond too little, never too
/// much).
pub(crate) fn settle() -> Script {
    Script::new(&format!(
        "{REDIS_CLOCK}
local cells = tonumber(ARGV[1])
local interval = tonumber(ARGV[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
local next
if cells >= 0 then
  local start = tat
  if now_us > start then start = now_us end
  next = start + cells * interval
else
  next = tat + cells * interval
end
next = math.ceil(next)
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
/// KEYS: rate, tokens. ARGV: requests remaining (-1: unknown), rate interval_ns, the
/// rate's tolerance in intervals (its burst less one), tokens remaining (-1: unknown), token
/// interval_ns, the budget's tolerance in intervals. The TAT is rounded up to a whole
/// microsecond (never more free than the server said).
pub(crate) fn observe() -> Script {
    Script::new(&format!(
        "{REDIS_CLOCK}
local function lower(key, remaining, interval_ns, cells)
  if remaining < 0 or interval_ns <= 0 then return end
  if remaining > cells then return end
  local target = math.ceil(now_us + (cells + 1 - remaining) * interval_ns / 1000)
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
/// [`RELEASE_BATCH`]). Returns `{removed, held, waiting}`: how many entries it removed, and
/// the permits held and callers queued it left.
pub(crate) fn release() -> Script {
    Script::new(
        r"
local ids = {unpack(ARGV, 2)}
local removed = redis.call('ZREM', KEYS[1], unpack(ids))
local queued = redis.call('ZCARD', KEYS[2])
if queued > 0 then
  local left = redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[3], unpack(ids))
  removed = removed + left
  queued = queued - left
  if removed > 0 then redis.call('PUBLISH', ARGV[1], '1') end
end
return {removed, redis.call('ZCARD', KEYS[1]), queued}
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
/// The key holds the Redis time (milliseconds) the pause ends at, which the acquire script
/// reads with the rest of its state, and expires then.
///
/// KEYS: pause. Returns the pause now in force, in milliseconds.
pub(crate) fn pause() -> Script {
    Script::new(&format!(
        "{REDIS_CLOCK}
local now_ms = math.floor(now_us / 1000)
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], now_ms + ms, 'PX', ms)
  return ms
end
return left
"
    ))
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

/// Removes what earlier processes of an instance left: every permit and every place in the
/// queue whose id starts with `ARGV[1]` (the instance's `NAME/`) but not with `ARGV[2]`
/// (this process's `NAME/INCARNATION/`), and wakes the waiters if it freed anything while
/// someone waits. See [`Instance`](crate::instance::Instance).
///
/// KEYS: held, queue, queue-expiry. ARGV: the instance's prefix, this process's prefix,
/// the channel. Returns `{permits removed, places removed}`.
pub(crate) fn reclaim() -> Script {
    Script::new(
        r"
local name, own = ARGV[1], ARGV[2]
local function earlier(key)
  local found = {}
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(id, 1, #name) == name and string.sub(id, 1, #own) ~= own then
      found[#found + 1] = id
    end
  end
  return found
end
-- In slices: `unpack` has a bound on how many values it spreads.
local function remove(key, ids)
  for i = 1, #ids, 1000 do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
local held = earlier(KEYS[1])
remove(KEYS[1], held)
local queued = earlier(KEYS[2])
remove(KEYS[2], queued)
remove(KEYS[3], queued)
if #held + #queued > 0 and redis.call('ZCARD', KEYS[2]) > 0 then
  redis.call('PUBLISH', ARGV[3], '1')
end
return {#held, #queued}
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
