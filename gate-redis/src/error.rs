//! Errors of building a limiter and of reaching Redis.

use std::fmt;

/// Why [`RedisLimiterBuilder::build`](crate::RedisLimiterBuilder::build) gave no limiter.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// Neither a rate nor a concurrency limit was set: there would be nothing to enforce.
    NoLimit,
    /// The rate's burst span (`burst × interval`) is longer than
    /// [`RedisLimiter::MAX_RATE_SPAN`](crate::RedisLimiter::MAX_RATE_SPAN).
    RateTooSlow,
    /// The lease is shorter than [`RedisLimiter::MIN_LEASE`](crate::RedisLimiter::MIN_LEASE)
    /// or longer than [`RedisLimiter::MAX_LEASE`](crate::RedisLimiter::MAX_LEASE).
    Lease,
    /// `build` was called outside a tokio runtime: the limiter spawns its background task
    /// (releases, lease renewals, wake-ups) on the current one.
    NoRuntime,
    /// A [keyed limiter](crate::RedisKeyedLimiter)'s template was made
    /// [adaptive](crate::RedisLimiterBuilder::adaptive): one algorithm cannot adapt every
    /// key's share, so a keyed limiter's keys keep the template's fixed concurrency limit.
    AdaptivePerKey,
    /// The [instance](crate::RedisLimiterBuilder::instance) name is empty or longer than
    /// 256 bytes.
    Instance,
    /// redis-rs refused the connection settings.
    Redis(redis::RedisError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLimit => {
                f.write_str("a redis limiter needs a rate, a concurrency limit or both")
            }
            Self::RateTooSlow => f.write_str("the rate's burst span exceeds the maximum"),
            Self::Lease => f.write_str("the lease is outside the accepted range"),
            Self::NoRuntime => f.write_str("a redis limiter must be built inside a tokio runtime"),
            Self::AdaptivePerKey => f.write_str(
                "a keyed redis limiter's template cannot be adaptive: give its keys a fixed \
                 concurrency limit",
            ),
            Self::Instance => f.write_str("an instance name must be between 1 and 256 bytes long"),
            Self::Redis(_) => f.write_str("invalid redis connection settings"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Redis(error) => Some(error),
            _ => None,
        }
    }
}

/// Redis did not answer within the limiter's timeout, or answered with an error.
#[derive(Debug)]
pub struct Unavailable {
    /// `None` when the call timed out.
    source: Option<redis::RedisError>,
}

impl Unavailable {
    pub(crate) fn timed_out() -> Self {
        Self { source: None }
    }

    pub(crate) fn error(error: redis::RedisError) -> Self {
        Self {
            source: Some(error),
        }
    }

    /// Whether the call ran past the limiter's timeout (rather than failing).
    pub fn is_timeout(&self) -> bool {
        self.source.is_none()
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            None => f.write_str("redis did not answer in time"),
            Some(error) => write!(f, "redis failed: {error}"),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}
