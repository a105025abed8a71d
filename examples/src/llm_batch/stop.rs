//! [`Stop`]: the signal that ends admission early (Ctrl-C, a spent quota, a bad line).

use std::sync::Arc;

use tokio::sync::watch;

use super::summary::Stopped;

/// Shared by the reader and every line in flight: once stopped, no line takes a new permit
/// or starts a new attempt; attempts already on the wire finish and are written.
///
/// [`abort`](Self::abort) goes further (a second Ctrl-C): the run drops what is in flight
/// and writes what is answered.
#[derive(Debug, Clone)]
pub struct Stop {
    state: Arc<watch::Sender<Option<Stopped>>>,
    aborted: Arc<watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(None)),
            aborted: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Stop {
    /// Not stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops for `why`; the first reason given is kept.
    pub fn stop(&self, why: Stopped) {
        self.state.send_if_modified(|state| {
            let first = state.is_none();
            if first {
                *state = Some(why);
            }
            first
        });
    }

    /// Why it stopped, if it did.
    pub fn reason(&self) -> Option<Stopped> {
        *self.state.borrow()
    }

    /// Resolves once stopped (at once if it already is).
    pub async fn stopped(&self) {
        let mut state = self.state.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = state.wait_for(Option::is_some).await;
    }

    /// Stops for `why` (if not stopped yet) and drops the attempts on the wire.
    pub fn abort(&self, why: Stopped) {
        self.stop(why);
        self.aborted.send_replace(true);
    }

    /// Resolves once aborted.
    pub async fn aborted(&self) {
        let mut aborted = self.aborted.subscribe();
        let _ = aborted.wait_for(|aborted| *aborted).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let stop = Stop::new();
        assert_eq!(stop.reason(), None);
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        stop.stop(Stopped::InsufficientQuota);
        stop.stop(Stopped::Interrupted);
        waiter.await.unwrap();
        assert_eq!(stop.reason(), Some(Stopped::InsufficientQuota));
        stop.stopped().await;

        let aborted = Stop::new();
        let waiter = tokio::spawn({
            let aborted = aborted.clone();
            async move { aborted.aborted().await }
        });
        aborted.stop(Stopped::Interrupted);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a stop is not an abort");
        aborted.abort(Stopped::Interrupted);
        waiter.await.unwrap();
    }
}
