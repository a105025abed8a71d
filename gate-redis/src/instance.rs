//! [`Instance`]: a process's name in the fleet that outlives the process, so that a
//! restarted process takes back at once what its crashed predecessor held
//! ([`RedisLimiterBuilder::instance`](crate::RedisLimiterBuilder::instance)).
//!
//! # How a predecessor's permits are told from a live process's
//!
//! A permit's id in Redis starts with its instance's name, then this process's
//! incarnation (a random number drawn once per process), then the connection's nonce and a
//! count: `NAME/INCARNATION/NONCE-N`. The first admission of each limit with an instance
//! runs one script that removes every permit and every place in the queue whose id starts
//! with `NAME/` but not with `NAME/INCARNATION/`: those of earlier processes of the same
//! name, and never this process's own (two limits of one process with the same name, or a
//! key of a keyed limiter evicted and made again, share the incarnation). Names are
//! percent-encoded (`%` and `/`), so that no name is a prefix of another's ids.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::SystemTime;

use tokio::sync::OnceCell;

use crate::background::Backend;
use crate::script;

/// The reclaim script, made (and hashed) once per process.
static RECLAIM: LazyLock<redis::Script> = LazyLock::new(script::reclaim);

/// The longest instance name accepted, in bytes: every permit's id carries it.
pub(crate) const MAX_NAME: usize = 256;

/// A process's name in the fleet, and what its first admission of a limit does with it.
#[derive(Debug)]
pub(crate) struct Instance {
    /// `NAME/`: the start of every id of every process of this name.
    name: String,
    /// `NAME/INCARNATION/`: the start of this process's ids.
    own: String,
}

impl Instance {
    /// The instance called `name` (already checked to be 1 to [`MAX_NAME`] bytes).
    pub(crate) fn new(name: &str) -> Self {
        let mut encoded = String::with_capacity(name.len() + 1);
        for c in name.chars() {
            match c {
                '%' => encoded.push_str("%25"),
                '/' => encoded.push_str("%2F"),
                c => encoded.push(c),
            }
        }
        encoded.push('/');
        let own = format!("{encoded}{:016x}/", incarnation());
        Self { name: encoded, own }
    }

    /// The start of the ids this process hands out under this name.
    pub(crate) fn prefix(&self) -> &str {
        &self.own
    }
}

/// This process's incarnation: drawn once, the same for every limiter in it.
fn incarnation() -> u64 {
    static INCARNATION: OnceLock<u64> = OnceLock::new();
    *INCARNATION
        .get_or_init(|| RandomState::new().hash_one((std::process::id(), SystemTime::now())))
}

/// One limit's reclaim of what earlier processes of its instance left in Redis: run by its
/// first admission, once.
#[derive(Debug)]
pub(crate) struct Reclaim {
    instance: Arc<Instance>,
    done: OnceCell<()>,
}

impl Reclaim {
    pub(crate) fn new(instance: Arc<Instance>) -> Self {
        Self {
            instance,
            done: OnceCell::new(),
        }
    }

    /// Removes the permits and queue places of earlier processes of this instance, the
    /// first time it is called (later calls, and calls while the first runs, wait for it).
    /// A failed call is not repeated: the leases then free what it would have, as they do
    /// for a process without an instance.
    pub(crate) async fn once(&self, backend: &Backend) {
        self.done
            .get_or_init(|| async {
                let keys = &backend.keys;
                let mut invocation = RECLAIM.prepare_invoke();
                invocation
                    .key(&keys.held)
                    .key(&keys.queue)
                    .key(&keys.queue_expiry)
                    .arg(&self.instance.name)
                    .arg(&self.instance.own)
                    .arg(&keys.channel);
                match backend.invoke::<(u64, u64)>(&invocation).await {
                    Ok((0, 0)) => {}
                    Ok((held, queued)) => tracing::info!(
                        key = %keys.held,
                        instance = %self.instance.name.trim_end_matches('/'),
                        held,
                        queued,
                        "gate-redis: took back what an earlier process of this instance held"
                    ),
                    Err(error) => tracing::debug!(
                        key = %keys.held,
                        %error,
                        "gate-redis: could not take back an earlier process's permits; their \
                         leases will free them"
                    ),
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_so_that_none_is_a_prefix_of_another() {
        let a = Instance::new("a");
        let ab = Instance::new("a/b");
        assert_eq!(a.name, "a/");
        assert_eq!(ab.name, "a%2Fb/");
        assert!(!ab.own.starts_with(&a.name));
        assert_eq!(Instance::new("100%").name, "100%25/");
        assert!(!Instance::new("a%2Fb").own.starts_with(&ab.name));
    }

    #[test]
    fn one_process_has_one_incarnation() {
        let (first, second) = (Instance::new("w"), Instance::new("w"));
        assert_eq!(first.own, second.own);
        assert!(first.own.starts_with(&first.name));
        assert_eq!(first.own.len(), "w/".len() + 16 + 1);
    }
}
