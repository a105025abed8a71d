//! `--resume`: what an earlier run left, read back from the output and its journal (see
//! [What survives a crash](super::output)).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::output::journal_path;

/// What an earlier run answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Lines in the output: the input's first `written` lines are answered.
    pub written: u64,
    /// Later lines answered and journalled, by index, as their output lines.
    pub held: BTreeMap<u64, String>,
}

impl Resumed {
    /// Lines answered in all.
    pub fn answered(&self) -> u64 {
        self.written + self.held.len() as u64
    }
}

/// The output cannot be resumed, or would be overwritten.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResumeError {
    /// Without `--resume`, the output (or its journal) already holds answers.
    Exists(std::path::PathBuf),
    /// A whole line of the output is not the line this tool would have written there.
    Foreign {
        /// 1-based.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or truncating failed.
    Io(io::Error),
}

impl fmt::Display for ResumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exists(path) => write!(
                f,
                "{} already holds results; pass --resume to continue it, or remove it",
                path.display()
            ),
            Self::Foreign { line, message } => write!(
                f,
                "output line {line} is not one llm_batch wrote there ({message}); not resuming"
            ),
            Self::Io(e) => write!(f, "cannot read the output: {e}"),
        }
    }
}

impl std::error::Error for ResumeError {}

impl From<io::Error> for ResumeError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Without `--resume`: refuses to append to an output, or a journal, that holds anything.
pub fn check_fresh(output: &Path) -> Result<(), ResumeError> {
    for path in [output.to_path_buf(), journal_path(output)] {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > 0 => return Err(ResumeError::Exists(path)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads what an earlier run left at `output` (nothing if it does not exist): counts its
/// lines, checking that line `i` is record `i`, cuts off a last line left half-written, and
/// reads the journal's held lines past them (a half-written or stale journal line is
/// skipped: that line is asked again).
pub fn recover(output: &Path) -> Result<Resumed, ResumeError> {
    let file = match OpenOptions::new().read(true).write(true).open(output) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Resumed::default()),
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(&file);
    let (mut written, mut whole_bytes) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // the end, or a line cut short by a kill or a crash
        }
        match index_of(&line) {
            Some(index) if index == written => {}
            Some(index) => {
                return Err(ResumeError::Foreign {
                    line: written + 1,
                    message: format!("its index is {index}, expected {written}"),
                });
            }
            None => {
                return Err(ResumeError::Foreign {
                    line: written + 1,
                    message: "not a JSON object with an index".into(),
                });
            }
        }
        written += 1;
        whole_bytes += n as u64;
    }
    drop(reader);
    if file.metadata()?.len() > whole_bytes {
        file.set_len(whole_bytes)?;
    }
    let held = match File::open(journal_path(output)) {
        Ok(journal) => read_journal(journal, written)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(Resumed { written, held })
}

fn read_journal(journal: File, written: u64) -> io::Result<BTreeMap<u64, String>> {
    let mut held = BTreeMap::new();
    for line in BufReader::new(journal).split(b'\n') {
        let line = line?;
        let Some(index) = index_of(&line) else {
            continue; // cut short
        };
        if index >= written
            && let Ok(text) = String::from_utf8(line)
        {
            held.entry(index).or_insert(text);
        }
    }
    Ok(held)
}

/// The `"index"` of a record line.
fn index_of(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(line)
        .ok()?
        .get("index")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn record(index: u64) -> String {
        format!(r#"{{"index":{index},"metadata":null,"response":{{}}}}"#)
    }

    #[test]
    fn counts_whole_lines_and_cuts_off_a_torn_one() {
        let dir = crate::llm_batch::testdir("resume");
        let out = dir.join("out.jsonl");
        assert_eq!(recover(&out).unwrap(), Resumed::default());
        check_fresh(&out).unwrap();

        let whole = format!("{}\n{}\n", record(0), record(1));
        fs::write(&out, format!("{whole}{{\"index\":2,\"meta")).unwrap();
        fs::write(
            journal_path(&out),
            format!("{}\n{}\n{}\n{{\"ind", record(1), record(5), record(3)),
        )
        .unwrap();
        let resumed = recover(&out).unwrap();
        assert_eq!(resumed.written, 2);
        assert_eq!(
            resumed.held.keys().copied().collect::<Vec<_>>(),
            [3, 5],
            "1 is written already, the torn line is skipped"
        );
        assert_eq!(resumed.held[&5], record(5));
        assert_eq!(resumed.answered(), 4);
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            whole,
            "torn line cut off"
        );
        assert!(matches!(check_fresh(&out), Err(ResumeError::Exists(_))));
    }

    #[test]
    fn refuses_an_output_it_did_not_write() {
        let dir = crate::llm_batch::testdir("foreign");
        let out = dir.join("out.jsonl");
        fs::write(&out, format!("{}\n{}\n", record(0), record(2))).unwrap();
        let err = recover(&out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output line 2 is not one llm_batch wrote there (its index is 2, expected 1); \
             not resuming"
        );
        fs::write(&out, "hello\n").unwrap();
        assert!(matches!(
            recover(&out),
            Err(ResumeError::Foreign { line: 1, .. })
        ));
        // An empty output with a journal is not fresh either.
        fs::write(&out, "").unwrap();
        check_fresh(&out).unwrap();
        fs::write(journal_path(&out), record(3)).unwrap();
        assert!(matches!(check_fresh(&out), Err(ResumeError::Exists(_))));
    }
}
