//! [`Priority`]: which of a keyed gate's two classes a key's callers wait in.

/// The class of a key's callers when a keyed gate's global limit binds, from
/// [`KeyedGateBuilder::priority`](super::KeyedGateBuilder::priority).
///
/// Interactive keys are served before batch keys, with a guard against starving the batch
/// class: while both have callers waiting, every
/// [`batch_every`](super::KeyedGateBuilder::batch_every)-th permit goes to a batch key.
/// Within a class, keys are served in turn by weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// Served first: a person is waiting.
    #[default]
    Interactive,
    /// Served when no interactive caller waits, and every `batch_every`-th permit while
    /// one does.
    Batch,
}

impl Priority {
    /// The ring this class waits in.
    pub(super) fn class(self) -> u8 {
        match self {
            Self::Interactive => 0,
            Self::Batch => 1,
        }
    }
}
