//! A [`RedisKeyedLimiter`] is a [`KeyedAdmission`]: gate-tower's `KeyedGateLayer` limits
//! requests by it per key as it does by a local keyed limiter, with every replica of a server
//! sharing each key's limit.

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use gate_core::keyed::{KeyedAdmission, KeyedAdmit, KeyedAdmitError, RateLeft, RateLimited};
use gate_core::{AcquireError, WaitLimits};

use crate::limiter::Refused;
use crate::{RedisKeyedLimiter, RedisPermit, keyed};

/// The longest wait a rate refusal reports: `i32::MAX` milliseconds, about 24.8 days, what
/// gate-tower advertises at most. Redis's answer is a number of microseconds that anything
/// with access to Redis can make as large as it likes.
const MAX_RATE_WAIT: Duration = Duration::from_millis(i32::MAX as u64);

/// Each key's admission is its [`RedisLimiter`](crate::RedisLimiter)'s (then the global
/// limit's, if there is one), with one difference: a key whose rate has no cell within the
/// caller's `max_wait` (as Redis's script answers) is refused at once with
/// [`KeyedAdmitError::RateLimited`], the template's rate and the wait Redis gave (capped at
/// `i32::MAX` milliseconds), not kept waiting for a time-out. The global limit's rate is
/// not the key's: a refusal by it reads as a time-out
/// ([`KeyedAcquireError::TimedOut`](gate_core::keyed::KeyedAcquireError::TimedOut)).
///
/// A new key at the cap with no idle key to evict is refused at once with
/// [`TooManyKeys`](gate_core::keyed::KeyedAcquireError::TooManyKeys); every other answer
/// takes a round trip, in the future [`admit_key`](KeyedAdmission::admit_key) returns.
///
/// [`rate_left`](KeyedAdmission::rate_left) is the key's rate's free cells as this
/// process last read them from Redis (normally the reply that admitted the permit; another
/// admission of the same key in this process may have been read since), and the next cell
/// free again within one interval between cells (zero with the bucket full): Redis's reply
/// says how many cells are free, not when the next one is. `None` for a permit the
/// [`FailurePolicy`](crate::FailurePolicy) handed out while Redis was out of reach, and for
/// a template with no rate.
impl<K, S> KeyedAdmission<K> for RedisKeyedLimiter<K, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    type Permit = RedisPermit;

    fn admit_key(
        self: &Arc<Self>,
        key: K,
        limits: WaitLimits,
    ) -> KeyedAdmit<
        RedisPermit,
        impl Future<Output = Result<RedisPermit, KeyedAdmitError>> + Send + 'static,
    > {
        let shared = match self.find_or_make(&key) {
            Ok(shared) => shared,
            Err(error) => return KeyedAdmit::Refused(error.into()),
        };
        let global = self.global_shared();
        let rate = self.rate;
        KeyedAdmit::Wait(async move {
            match keyed::admit_rated(shared, global, limits, None).await {
                Ok(permit) => Ok(permit),
                Err(Refused::Rate(wait)) => Err(match rate {
                    Some(rate) => KeyedAdmitError::RateLimited(RateLimited::new(
                        rate,
                        wait.min(MAX_RATE_WAIT),
                    )),
                    None => AcquireError::TimedOut.into(),
                }),
                Err(Refused::Acquire(error)) => Err(error.into()),
            }
        })
    }

    fn rate_left(&self, permit: &RedisPermit) -> Option<RateLeft> {
        let rate = self.rate?;
        if !permit.is_shared() {
            return None;
        }
        let remaining = permit.shared().backend.record.rate_free()?;
        let next = if remaining >= u64::from(rate.burst_size()) {
            Duration::ZERO
        } else {
            rate.interval()
        };
        Some(RateLeft::new(rate, remaining, next))
    }
}
