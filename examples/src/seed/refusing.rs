//! [`RefusingServer`]: the API of the seed's Example 4, which refuses anything above its
//! concurrency limit instead of queueing it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;

use super::Gauge;

/// The server's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitExceeded {
    /// Requests the server was holding when this one arrived, this one included.
    pub concurrent: usize,
}

impl fmt::Display for RateLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit exceeded ({} concurrent)", self.concurrent)
    }
}

impl std::error::Error for RateLimitExceeded {}

/// A server that serves `limit` requests at once and refuses any beyond.
///
/// The seed counted asyncio tasks to detect concurrency; this server counts the requests it
/// is actually serving.
#[derive(Debug)]
pub struct RefusingServer {
    limit: usize,
    call_time: Duration,
    load: Arc<Gauge>,
}

impl RefusingServer {
    /// A server of the given limit and response time.
    pub fn new(limit: usize, call_time: Duration) -> Self {
        Self {
            limit,
            call_time,
            load: Arc::default(),
        }
    }

    /// Serves one request, or refuses it at once if `limit` are already being served.
    pub async fn call(&self, id: usize) -> Result<String, RateLimitExceeded> {
        let (_serving, concurrent) = self.load.enter();
        if concurrent > self.limit {
            return Err(RateLimitExceeded { concurrent });
        }
        sleep(self.call_time).await;
        Ok(format!("Success: {id}"))
    }

    /// Most requests held at once, refused ones included.
    pub fn peak(&self) -> usize {
        self.load.peak()
    }
}
