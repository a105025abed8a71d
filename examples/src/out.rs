//! [`Out`]: prints a line and, for tests, remembers it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// Where an example prints: stdout always, plus a record of every line when capturing.
///
/// Examples print from many tasks at once; cloning an `Out` shares its record.
#[derive(Clone, Default)]
pub struct Out {
    record: Option<Arc<Mutex<Vec<String>>>>,
    quiet: bool,
}

impl Out {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        Self::default()
    }

    /// Prints to stdout and keeps every line for [`lines`](Self::lines).
    pub fn capture() -> Self {
        Self {
            record: Some(Arc::default()),
            quiet: false,
        }
    }

    /// Keeps every line without printing it.
    pub fn silent() -> Self {
        Self {
            record: Some(Arc::default()),
            quiet: true,
        }
    }

    /// Prints one line (which may hold several).
    pub fn line(&self, line: impl Into<String>) {
        let line = line.into();
        if !self.quiet {
            println!("{line}");
        }
        if let Some(record) = &self.record {
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(line.lines().map(str::to_owned));
        }
    }

    /// Every line printed so far, when capturing.
    pub fn lines(&self) -> Vec<String> {
        self.record.as_ref().map_or_else(Vec::new, |r| {
            r.lock().unwrap_or_else(PoisonError::into_inner).clone()
        })
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Out")
            .field("capturing", &self.record.is_some())
            .field("quiet", &self.quiet)
            .finish()
    }
}
