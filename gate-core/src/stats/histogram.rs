//! A fixed-size log-linear histogram of wait times.
//!
//! Values are microseconds. Each power of two is split into four sub-buckets, so any
//! estimate is within 25% of the true value; 256 counters cover every `u64`. Recording is
//! an index computation and an add, cheap enough to do for every admission.

use std::time::Duration;

const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = 64 * SUB;

/// In declaration order: the totals every recorded wait updates first, the buckets after.
///
/// The buckets past the first (waits of a microsecond or more) are allocated at the first
/// such wait: a gate whose callers never wait (a keyed limiter's many keys, most of them)
/// keeps 2 KB less.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Histogram {
    count: u64,
    sum_micros: u64,
    max_micros: u64,
    /// Bucket 0: waits under a microsecond, callers admitted at once among them.
    zeros: u64,
    /// Every bucket; its first stays 0, `zeros` counts it.
    counts: Option<Box<[u64; BUCKETS]>>,
}

impl Histogram {
    pub(crate) const fn new() -> Self {
        Self {
            count: 0,
            sum_micros: 0,
            max_micros: 0,
            zeros: 0,
            counts: None,
        }
    }

    /// Records a wait of zero: the common, uncontended case.
    #[inline]
    pub(crate) fn record_zero(&mut self) {
        self.record_zeros(1);
    }

    /// Records `n` waits of zero.
    pub(crate) fn record_zeros(&mut self, n: u64) {
        self.zeros += n;
        self.count += n;
    }

    /// Records `wait` as standing for `weight` waits of about that length.
    pub(crate) fn record_weighted(&mut self, wait: Duration, weight: u64) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        match index(micros) {
            0 => self.zeros += weight,
            i => self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]))[i] += weight,
        }
        self.count += weight;
        self.sum_micros = self
            .sum_micros
            .saturating_add(micros.saturating_mul(weight));
        self.max_micros = self.max_micros.max(micros);
    }

    pub(crate) fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => Duration::from_micros(self.sum_micros / n),
        }
    }

    pub(crate) fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros)
    }

    /// An estimate of the `q` quantile (0.0 ..= 1.0): the upper edge of the bucket holding
    /// it, never above the observed maximum.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = self.zeros;
        if seen >= rank {
            return Duration::from_micros(upper_edge(0).min(self.max_micros));
        }
        let buckets = self
            .counts
            .iter()
            .flat_map(|counts| counts.iter().enumerate());
        for (i, &n) in buckets.skip(1) {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(upper_edge(i).min(self.max_micros));
            }
        }
        self.max()
    }
}

/// The counts of a histogram as last published, to publish only what was recorded since.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub(crate) struct Published {
    /// Allocated at the first publication, so that a gate never published pays nothing.
    counts: Option<Box<[u64; BUCKETS]>>,
}

#[cfg(feature = "metrics")]
impl Published {
    pub(crate) const fn new() -> Self {
        Self { counts: None }
    }

    /// Adds to `out` the waits `histogram` recorded since the last call, as a value for
    /// each bucket (its midpoint) and how many waits landed there, and remembers them.
    /// Waits under a microsecond (the first bucket: callers admitted at once) are left out,
    /// so that publishing costs in proportion to the callers that waited.
    pub(crate) fn news(&mut self, histogram: &Histogram, out: &mut Vec<(Duration, u64)>) {
        let Some(counts) = &histogram.counts else {
            return;
        };
        let seen = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let buckets = counts.iter().zip(seen.iter_mut()).enumerate();
        for (i, (&now, seen)) in buckets.skip(1) {
            let new = now.saturating_sub(*seen);
            if new > 0 {
                *seen = now;
                out.push((Duration::from_micros(midpoint(i)), new));
            }
        }
    }
}

/// The middle of bucket `i`, the value a published wait that landed there stands at.
#[cfg(feature = "metrics")]
fn midpoint(i: usize) -> u64 {
    let lower = match i {
        0 => 0,
        i => upper_edge(i - 1).saturating_add(1),
    };
    lower + (upper_edge(i) - lower) / 2
}

/// Bucket of `v`: values below `SUB` get one bucket each; above, the top `SUB_BITS + 1`
/// bits pick it.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// Largest value that lands in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let base = (SUB as u64 + sub) << (exp - SUB_BITS);
    base.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_edge_bounds_it() {
        for v in (0..10_000u64).chain([u64::MAX / 2, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(upper_edge(i) >= v, "{v}: edge {}", upper_edge(i));
            // Relative error stays within one sub-bucket (25%).
            assert!(
                upper_edge(i) - v <= v / 4 + 1,
                "{v}: edge {}",
                upper_edge(i)
            );
            if i > 0 {
                assert!(upper_edge(i - 1) < v, "{v} should not fit bucket {}", i - 1);
            }
        }
    }

    #[test]
    fn waits_under_a_microsecond_allocate_no_buckets() {
        let mut h = Histogram::new();
        h.record_zeros(3);
        h.record_weighted(Duration::from_nanos(999), 1);
        assert!(h.counts.is_none());
        assert!(std::mem::size_of::<Histogram>() <= 48);
        assert_eq!((h.count, h.quantile(1.0)), (4, Duration::ZERO));
        // The first wait of a microsecond or more allocates them; the zeros still count.
        h.record_weighted(Duration::from_millis(10), 4);
        assert!(h.counts.is_some());
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        let p90 = h.quantile(0.9).as_micros();
        assert!((10_000..=12_500).contains(&p90), "p90 = {p90}");
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        for ms in 1..=100 {
            h.record_weighted(Duration::from_millis(ms), 1);
        }
        assert_eq!(h.count, 100);
        assert_eq!(h.max(), Duration::from_millis(100));
        assert_eq!(h.mean(), Duration::from_micros(50_500));
        let p50 = h.quantile(0.5).as_millis();
        assert!((50..=63).contains(&p50), "p50 = {p50}");
        let p99 = h.quantile(0.99).as_millis();
        assert!((99..=100).contains(&p99), "p99 = {p99}");
        assert_eq!(h.quantile(1.0), Duration::from_millis(100));
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn publishing_reports_each_wait_once_near_its_value() {
        let mut h = Histogram::new();
        let mut published = Published::new();
        h.record_zeros(2);
        h.record_weighted(Duration::from_millis(100), 3);
        let mut out = Vec::new();
        published.news(&h, &mut out);
        // The zeros are left out; the waits stand at the middle of their bucket.
        assert_eq!(out.len(), 1, "{out:?}");
        let (value, n) = out[0];
        assert_eq!(n, 3);
        let micros = value.as_micros() as f64;
        assert!((micros - 100_000.0).abs() <= 12_500.0, "{value:?}");
        // Nothing new: nothing published; then only what was added.
        out.clear();
        published.news(&h, &mut out);
        assert!(out.is_empty());
        h.record_zero();
        h.record_weighted(Duration::from_micros(5), 1);
        published.news(&h, &mut out);
        assert_eq!(out, [(Duration::from_micros(5), 1)]);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.99), Duration::ZERO);
        assert_eq!(h.mean(), Duration::ZERO);
    }
}
