//! Metrics for named gates and limiters, through the [`metrics`] facade (the `metrics`
//! feature, off by default).
//!
//! # Publishing on scrape
//!
//! A gate already counts everything these metrics report (see [`Stats`]), under the lock it
//! takes anyway or in the atomics of its lock-free path. So metrics cost nothing per
//! acquire: instead of a facade call for every admission and release, the program calls
//! [`Gate::publish_metrics`] or [`Limiter::publish_metrics`] when its exporter is about to
//! be read (in the `/metrics` handler, before rendering) or on a timer, and the gate writes
//! its counters and gauges then, in one lock. Between two publications the values stand
//! still, which is what a scrape sees anyway.
//!
//! Only named gates publish ([`GateBuilder::name`](crate::GateBuilder::name),
//! [`LimiterBuilder::name`](crate::LimiterBuilder::name)): `publish_metrics` on an unnamed
//! one does nothing, as every series needs a `gate.name` to tell gates apart, and a made-up
//! default would merge unrelated gates into one series. The one thing recorded as it
//! happens is a retry decision ([`RETRIES`]): a call that retries is backing off anyway.
//!
//! # The metrics
//!
//! Names, units and labels follow OpenTelemetry's semantic conventions: dotted lowercase
//! names under a `gate.` namespace, durations in seconds, a `gate.name` label on every
//! series and an `outcome` label where one count splits by how things ended (as
//! `db.client.connection.*` does for connection pools). A Prometheus exporter turns them
//! into `gate_admissions_total{gate_name="openai",outcome="admitted"}` and so on.
//!
//! | name | kind | unit | what |
//! |---|---|---|---|
//! | [`LIMIT`] | gauge | `{permit}` | the concurrency limit (an adaptive limit's current value) |
//! | [`IN_FLIGHT`] | gauge | `{permit}` | permits held |
//! | [`WAITING`] | gauge | `{caller}` | callers queued for permits |
//! | [`ADMISSIONS`] | counter | `{caller}` | by `outcome`: `admitted`, `rejected`, `timed_out`, `cancelled` (and `too_many_keys` for keyed gates) |
//! | [`WAIT_DURATION`] | histogram | `s` | time admitted callers who queued waited |
//! | [`PUSHBACK`] | counter | `{response}` | attempts reported as overloaded (limiters) |
//! | [`PAUSED`] | gauge | `1` | 1 while a server's `Retry-After` pauses the limiter, else 0 |
//! | [`RATE_REMAINING`] | gauge | `{request}` | requests the rate limit would admit at once |
//! | [`TOKENS_REMAINING`] | gauge | `{token}` | tokens left in the token budget |
//! | [`RETRIES`] | counter | `{retry}` | by `outcome`: `retried`, `gave_up`, `permanent`, `hint_too_long` |
//! | [`KEYS`] | gauge | `{key}` | keys held in memory (keyed gates and limiters) |
//!
//! The wait histogram holds the callers who queued, not those admitted at once: its count
//! is how many waited, and `gate.admissions{outcome="admitted"}` less that count is how many
//! got in at once. Publishing a sample per admission would cost the exporter a record per
//! acquire, on the publishing thread but for every acquire all the same; this way it costs
//! in proportion to the waits. It is published from the gate's own log-linear histogram:
//! each wait stands at the middle of its bucket (within 12.5% of its value), and in a long
//! queue one waiter in [`SAMPLE_EVERY`](crate::stats::SAMPLE_EVERY) is timed for the
//! others, as in [`Stats::wait`]; a wait under a microsecond counts as admitted at once.
//!
//! # Keyed gates and limiters
//!
//! A [`KeyedGate`] or [`KeyedLimiter`] named by its builder
//! ([`KeyedGateBuilder::name`](crate::keyed::KeyedGateBuilder::name),
//! [`KeyedLimiterBuilder::name`](crate::keyed::KeyedLimiterBuilder::name)) publishes
//! the same series under its own `gate.name`, for the whole of it: in flight and waiting
//! across all keys, the global limit as [`LIMIT`] (a keyed gate built with one; a keyed
//! limiter has no global level, and publishes no limit), the keys held in memory as
//! [`KEYS`], and new keys refused at the cap (`TooManyKeys`) as
//! `gate.admissions{outcome="too_many_keys"}`. A keyed gate counts its other outcomes as a
//! gate does; a keyed limiter's keys are limiters of their own, made and evicted as keys
//! come and go, whose counts are not summed (a sum would go back when a key is evicted).
//!
//! **No series is labelled by key.** Keys come from the network (API keys, tenants,
//! addresses) and are unbounded: a `key` label would make a new series for every key a
//! client invents, which grows an exporter's memory and a time-series database's index
//! without bound, the cardinality explosion every metrics backend warns about. To watch one
//! tenant, give it a [`Limiter`] of its own with a name.
//!
//! # Why the `metrics` facade
//!
//! The facade is one small crate with a stable API, and leaves the exporter to the program:
//! `metrics-exporter-prometheus`, a StatsD exporter, or OpenTelemetry through
//! `metrics-exporter-opentelemetry`. Depending on OpenTelemetry's SDK directly would pull
//! its much larger, faster-changing crates into every user of the feature, for a
//! capability (observable instruments read on collection) that publishing on scrape
//! gives here too.
//!
//! # Examples
//!
//! ```
//! use gate_core::Gate;
//!
//! let gate = Gate::builder(8).name("search").build().unwrap();
//! gate_core::metrics::describe();
//! // In the `/metrics` handler, before the exporter renders:
//! gate.publish_metrics();
//! ```

use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::keyed::{KeyedGate, KeyedLimiter};
use crate::observe::RetryDecision;
use crate::{Gate, Limiter, Stats};

/// The label naming the gate or limiter on every series.
pub const NAME_LABEL: &str = "gate.name";
/// The label saying how an admission or a retry decision ended.
pub const OUTCOME_LABEL: &str = "outcome";

/// Gauge: the concurrency limit in force.
pub const LIMIT: &str = "gate.limit";
/// Gauge: permits held.
pub const IN_FLIGHT: &str = "gate.in_flight";
/// Gauge: callers queued for permits.
pub const WAITING: &str = "gate.waiting";
/// Counter: acquisitions, by `outcome` (`admitted`, `rejected`, `timed_out`, `cancelled`).
pub const ADMISSIONS: &str = "gate.admissions";
/// Histogram, in seconds: how long admitted callers who had to queue waited.
pub const WAIT_DURATION: &str = "gate.wait.duration";
/// Counter: attempts reported to a limiter as overloaded (a 429 or 503).
pub const PUSHBACK: &str = "gate.pushback";
/// Gauge: 1 while a limiter is paused by a server's hint, else 0.
pub const PAUSED: &str = "gate.paused";
/// Gauge: requests a limiter's rate limit would admit at once.
pub const RATE_REMAINING: &str = "gate.rate.remaining";
/// Gauge: tokens left in a limiter's token budget.
pub const TOKENS_REMAINING: &str = "gate.tokens.remaining";
/// Gauge: keys held in memory by a keyed gate or limiter (busy ones and idle ones kept for
/// reuse).
pub const KEYS: &str = "gate.keys";
/// Counter: decisions of retried calls after a failed attempt, by `outcome` (`retried`,
/// `gave_up`, `permanent`, `hint_too_long`). Not labelled by gate: a policy is not tied to
/// one.
pub const RETRIES: &str = "gate.retries";

/// Describes every metric (unit and help text) to the installed recorder, which exporters
/// use for `# HELP` and `# TYPE` lines. Call it once, after installing the recorder.
pub fn describe() {
    describe_gauge!(LIMIT, Unit::Count, "The concurrency limit in force");
    describe_gauge!(IN_FLIGHT, Unit::Count, "Permits held");
    describe_gauge!(WAITING, Unit::Count, "Callers queued for permits");
    describe_counter!(ADMISSIONS, Unit::Count, "Acquisitions, by outcome");
    describe_histogram!(
        WAIT_DURATION,
        Unit::Seconds,
        "How long admitted callers who queued waited for their permits"
    );
    describe_counter!(
        PUSHBACK,
        Unit::Count,
        "Attempts reported as overloaded by the server"
    );
    describe_gauge!(PAUSED, Unit::Count, "1 while paused by a server's hint");
    describe_gauge!(
        RATE_REMAINING,
        Unit::Count,
        "Requests the rate limit would admit at once"
    );
    describe_gauge!(TOKENS_REMAINING, Unit::Count, "Tokens left in the budget");
    describe_counter!(RETRIES, Unit::Count, "Retry decisions, by outcome");
    describe_gauge!(KEYS, Unit::Count, "Keys held in memory");
}

impl Gate {
    /// Writes the gate's state to the installed `metrics` recorder, labelled with its
    /// [name](Gate::name): limit, in flight and waiting (gauges), admissions by outcome
    /// (counters), and the waits of callers who queued since the last call (histogram).
    /// Does nothing for
    /// an unnamed gate. See [`metrics`](crate::metrics) for the names and why this is
    /// called on scrape rather than recorded per acquire.
    ///
    /// Takes the gate's lock once, as [`stats`](Gate::stats) does; the lock-free path stays
    /// open meanwhile.
    pub fn publish_metrics(&self) {
        if let Some(name) = self.name() {
            publish_gate(self, name, true);
        }
    }
}

impl Limiter {
    /// Writes the limiter's state to the installed `metrics` recorder, labelled with its
    /// [name](Limiter::name): what [`Gate::publish_metrics`] writes for its gate (the limit
    /// only if it has a concurrency limit), the pushback seen (counter), whether it is
    /// paused, and what its rate limit and token budget have left (gauges). Does nothing
    /// for an unnamed limiter.
    pub fn publish_metrics(&self) {
        let Some(name) = self.name() else {
            return;
        };
        publish_gate(self.gate(), name, self.limit().is_some());
        let label = [(NAME_LABEL, name)];
        counter!(PUSHBACK, &label).absolute(self.pushback_seen());
        gauge!(PAUSED, &label).set(if self.is_paused() { 1.0 } else { 0.0 });
        if let Some(rate) = self.rate_limit() {
            gauge!(RATE_REMAINING, &label).set(rate.remaining() as f64);
        }
        if let Some(tokens) = self.token_limit() {
            gauge!(TOKENS_REMAINING, &label).set(tokens.remaining() as f64);
        }
    }
}

impl<K, S> KeyedGate<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    /// Writes the keyed gate's state to the installed `metrics` recorder, labelled with its
    /// [name](KeyedGate::name) and never by key: in flight and waiting across all keys, the
    /// global limit if it has one, the keys in memory ([`KEYS`]) (gauges), and admissions
    /// by outcome, `too_many_keys` included (counters). Does nothing for an unnamed gate.
    /// See [the module docs](crate::metrics#keyed-gates-and-limiters).
    ///
    /// Takes each shard's lock once (the gate's one lock, with a global limit). A keyed
    /// gate does not time its waits: it publishes no wait histogram.
    pub fn publish_metrics(&self) {
        let Some(name) = self.name() else {
            return;
        };
        let (in_flight, waiting, keys, counts) = self.metrics_snapshot();
        publish_load(name, self.global_limit(), in_flight, waiting);
        gauge!(KEYS, NAME_LABEL => name).set(keys as f64);
        publish_admissions(
            name,
            [
                ("admitted", counts.admitted),
                ("rejected", counts.rejected),
                ("timed_out", counts.timed_out),
                ("cancelled", counts.cancelled),
                (TOO_MANY_KEYS, counts.too_many_keys),
            ],
        );
    }
}

impl<K, S> KeyedLimiter<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    /// Writes the keyed limiter's state to the installed `metrics` recorder, labelled with
    /// its [name](KeyedLimiter::name) and never by key: the keys in memory ([`KEYS`]), the
    /// permits out and callers waiting summed over the keys' limiters (gauges), and the new
    /// keys refused at the cap as `gate.admissions{outcome="too_many_keys"}` (counter).
    /// Does nothing for an unnamed keyed limiter. See
    /// [the module docs](crate::metrics#keyed-gates-and-limiters).
    ///
    /// Costs a read of every key's limiter (each in its own lock, none under the keyed
    /// limiter's), so up to [`max_keys`](KeyedLimiter::max_keys) reads: call it on scrape,
    /// not per request.
    pub fn publish_metrics(&self) {
        let Some(name) = self.name() else {
            return;
        };
        let (keys, refused, in_flight, waiting) = self.metrics_snapshot();
        publish_load(name, None, in_flight, waiting);
        gauge!(KEYS, NAME_LABEL => name).set(keys as f64);
        publish_admissions(name, [(TOO_MANY_KEYS, refused)]);
    }
}

/// The `outcome` of a new key refused at a keyed gate's or limiter's cap.
const TOO_MANY_KEYS: &str = "too_many_keys";

fn publish_gate(gate: &Gate, name: &'static str, limited: bool) {
    let mut waits = Vec::new();
    let stats: Stats = gate.raw().publish(&mut waits);
    publish_load(
        name,
        limited.then_some(stats.limit),
        stats.in_flight,
        stats.waiting,
    );
    publish_admissions(
        name,
        [
            ("admitted", stats.admitted),
            ("rejected", stats.rejected),
            ("timed_out", stats.timed_out),
            ("cancelled", stats.cancelled),
        ],
    );
    let histogram = metrics::histogram!(WAIT_DURATION, NAME_LABEL => name);
    for (wait, count) in waits {
        histogram.record_many(secs(wait), usize::try_from(count).unwrap_or(usize::MAX));
    }
}

/// The load of a gate or of a keyed level: its limit (if it has one), in flight, waiting.
fn publish_load(name: &'static str, limit: Option<usize>, in_flight: usize, waiting: usize) {
    if let Some(limit) = limit {
        gauge!(LIMIT, NAME_LABEL => name).set(limit as f64);
    }
    gauge!(IN_FLIGHT, NAME_LABEL => name).set(in_flight as f64);
    gauge!(WAITING, NAME_LABEL => name).set(waiting as f64);
}

/// Admissions so far, by outcome.
fn publish_admissions(name: &'static str, counts: impl IntoIterator<Item = (&'static str, u64)>) {
    for (outcome, count) in counts {
        counter!(ADMISSIONS, NAME_LABEL => name, OUTCOME_LABEL => outcome).absolute(count);
    }
}

fn secs(wait: Duration) -> f64 {
    wait.as_secs_f64()
}

/// Counts one retry decision.
pub(crate) fn record_retry(decision: RetryDecision) {
    counter!(RETRIES, OUTCOME_LABEL => decision.as_str()).increment(1);
}
