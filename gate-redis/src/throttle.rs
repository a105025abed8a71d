//! [`Throttle`]: at most one log line a minute for what an operator must act on.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets one event through per [`Throttle::PERIOD`].
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    /// The shortest time between two events let through.
    const PERIOD: Duration = Duration::from_secs(60);

    /// Whether this event may be logged (at warn): the first, and then one a period.
    pub(crate) fn allow(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap();
        match *last {
            Some(at) if now.saturating_duration_since(at) < Self::PERIOD => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_event_a_minute_gets_through() {
        let throttle = Throttle::default();
        assert!(throttle.allow());
        assert!(!throttle.allow());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!throttle.allow());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(throttle.allow());
    }
}
