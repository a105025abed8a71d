//! The output, written in input order however the answers arrive: [`Record`] is one line,
//! [`OrderedWriter`] holds answers that came before an earlier line's and keeps them in a
//! journal beside the output until their turn comes.
//!
//! # What survives a crash
//!
//! The output is its own journal: its lines are the input's first lines, answered, in
//! order, so `--resume` counts them and starts after them. An answer that arrives before an
//! earlier line's is appended to `OUTPUT.pending` at once; `--resume` takes it from there,
//! so it is not asked again. Each write is flushed to the operating system before the next
//! answer is handled, so `kill -9` loses nothing that was answered: only the requests in
//! flight at the kill are sent again. The files are fsynced (`sync_data`) at most once a
//! second and at the end, so a power cut may lose up to the last second of answers: those
//! lines are sent again too. A line cut in half by either is dropped on resume.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One output line: a line's index, its metadata, and the response or the error.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The input line's position, from 0.
    pub index: u64,
    /// The input line's `"metadata"`, or `null`.
    pub metadata: Value,
    /// `Ok(response body)` or `Err(error object)`.
    pub result: Result<Value, Value>,
}

impl Record {
    /// The JSON line, fields in the order `index`, `metadata`, then `response` or `error`.
    pub fn to_line(&self) -> String {
        let (key, value) = match &self.result {
            Ok(response) => ("response", response),
            Err(error) => ("error", error),
        };
        format!(
            "{{\"index\":{},\"metadata\":{},\"{key}\":{}}}",
            self.index, self.metadata, value
        )
    }
}

/// The journal's path for `output`: `OUTPUT.pending` beside it.
pub fn journal_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".pending");
    output.with_file_name(name)
}

/// How often the files are fsynced while the batch runs.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Writes [`Record`] lines in index order; see [What survives a crash](self).
#[derive(Debug)]
pub struct OrderedWriter {
    output: BufWriter<File>,
    next: u64,
    /// Answered lines waiting for an earlier one, by index.
    pending: BTreeMap<u64, String>,
    journal: Journal,
    last_sync: Instant,
}

impl OrderedWriter {
    /// Appends to `output` from line `next` on (0 for a new output), with `pending` the
    /// later lines already answered (from [`recover`](super::resume::recover)).
    pub fn open(output: &Path, next: u64, pending: BTreeMap<u64, String>) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(output)?;
        let mut writer = Self {
            output: BufWriter::new(file),
            next,
            pending: BTreeMap::new(),
            journal: Journal::new(journal_path(output)),
            last_sync: Instant::now(),
        };
        writer.journal.rewrite(pending.values())?;
        writer.pending = pending;
        writer.drain()?;
        Ok(writer)
    }

    /// The index of the next line the output needs.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Answers held for an earlier line.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Whether line `index` is answered (written or held).
    pub fn is_answered(&self, index: u64) -> bool {
        index < self.next || self.pending.contains_key(&index)
    }

    /// Writes `record` if its turn has come (and whatever it unblocks), else holds it and
    /// journals it. A record for a line already answered is ignored.
    pub fn push(&mut self, record: &Record) -> io::Result<()> {
        if self.is_answered(record.index) {
            return Ok(());
        }
        let line = record.to_line();
        if record.index == self.next {
            self.write(&line)?;
            self.drain()?;
        } else {
            self.journal.append(&line)?;
            self.pending.insert(record.index, line);
            if self.journal.lines > 64 + 2 * self.pending.len() {
                self.journal.rewrite(self.pending.values())?;
            }
        }
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    fn write(&mut self, line: &str) -> io::Result<()> {
        self.output.write_all(line.as_bytes())?;
        self.output.write_all(b"\n")?;
        self.next += 1;
        Ok(())
    }

    /// Writes the held lines whose turn has come, then hands everything to the OS; empties
    /// the journal once nothing is held (after the output has the lines it held).
    fn drain(&mut self) -> io::Result<()> {
        while let Some(line) = self.pending.remove(&self.next) {
            self.write(&line)?;
        }
        self.output.flush()?;
        if self.pending.is_empty() {
            self.journal.clear()?;
        }
        Ok(())
    }

    /// Flushes and fsyncs the output and the journal.
    pub fn sync(&mut self) -> io::Result<()> {
        self.output.flush()?;
        self.output.get_ref().sync_data()?;
        self.journal.sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs, and removes the journal if nothing is held. Returns the lines written in all.
    pub fn finish(mut self) -> io::Result<u64> {
        self.sync()?;
        if self.pending.is_empty() {
            self.journal.remove()?;
        }
        Ok(self.next)
    }
}

/// `OUTPUT.pending`: the held lines, appended as they arrive, rewritten when it has grown
/// well past what is held, emptied when nothing is.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Lines in the file.
    lines: usize,
}

impl Journal {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            lines: 0,
        }
    }

    fn append(&mut self, line: &str) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            )),
        };
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
        file.flush()?;
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file by `lines`, atomically (a new file renamed over the old one).
    fn rewrite<'a>(&mut self, lines: impl Iterator<Item = &'a String>) -> io::Result<()> {
        self.file = None;
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut file = BufWriter::new(File::create(&tmp)?);
        self.lines = 0;
        for line in lines {
            file.write_all(line.as_bytes())?;
            file.write_all(b"\n")?;
            self.lines += 1;
        }
        file.flush()?;
        drop(file);
        fs::rename(&tmp, &self.path)
    }

    fn clear(&mut self) -> io::Result<()> {
        if self.lines > 0 {
            if let Some(file) = &mut self.file {
                file.flush()?;
                file.get_ref().set_len(0)?;
            } else {
                File::create(&self.path)?;
            }
            self.lines = 0;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => {
                file.flush()?;
                file.get_ref().sync_data()
            }
            None => Ok(()),
        }
    }

    fn remove(&mut self) -> io::Result<()> {
        self.file = None;
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(index: u64) -> Record {
        Record {
            index,
            metadata: json!({"id": index}),
            result: Ok(json!({"n": index})),
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_record_is_one_line_with_its_fields_in_order() {
        assert_eq!(
            record(3).to_line(),
            r#"{"index":3,"metadata":{"id":3},"response":{"n":3}}"#
        );
        let failed = Record {
            index: 0,
            metadata: Value::Null,
            result: Err(json!({"message": "no\nway"})),
        };
        assert_eq!(
            failed.to_line(),
            r#"{"index":0,"metadata":null,"error":{"message":"no\nway"}}"#
        );
    }

    #[test]
    fn lines_come_out_in_input_order_and_early_ones_wait_in_the_journal() {
        let dir = crate::llm_batch::testdir("output");
        let out = dir.join("out.jsonl");
        let journal = journal_path(&out);
        assert_eq!(journal, dir.join("out.jsonl.pending"));
        let mut writer = OrderedWriter::open(&out, 0, BTreeMap::new()).unwrap();
        writer.push(&record(2)).unwrap();
        writer.push(&record(1)).unwrap();
        // Nothing in the output yet, both held, both journalled (and flushed).
        assert!(lines(&out).is_empty());
        assert_eq!(writer.held(), 2);
        assert_eq!(lines(&journal), [record(2).to_line(), record(1).to_line()]);
        assert!(writer.is_answered(1) && !writer.is_answered(0) && !writer.is_answered(3));

        writer.push(&record(0)).unwrap();
        let expected: Vec<_> = (0..3).map(|i| record(i).to_line()).collect();
        assert_eq!(lines(&out), expected, "written through to the OS at once");
        assert!(lines(&journal).is_empty(), "emptied once nothing is held");
        writer.push(&record(1)).unwrap();
        assert_eq!(lines(&out).len(), 3, "a line already answered is ignored");
        writer.push(&record(4)).unwrap();
        assert_eq!(writer.finish().unwrap(), 3);
        assert_eq!(lines(&journal), [record(4).to_line()], "kept: 4 is held");
    }

    #[test]
    fn the_journal_is_rewritten_before_it_grows_past_what_is_held() {
        let dir = crate::llm_batch::testdir("compact");
        let out = dir.join("out.jsonl");
        let mut writer = OrderedWriter::open(&out, 0, BTreeMap::new()).unwrap();
        // Line 999 arrives first and is held throughout, so the journal is never emptied;
        // then pairs arrive out of order, each unblocked at once.
        writer.push(&record(999)).unwrap();
        for i in (0..998).step_by(2) {
            writer.push(&record(i + 1)).unwrap();
            writer.push(&record(i)).unwrap();
            assert_eq!(writer.held(), 1);
            // Rewritten past 64 + 2 × the 2 held after each odd line arrives; without the
            // rewrites it would hold every odd line by now.
            assert!(lines(&journal_path(&out)).len() <= 64 + 2 * 2);
        }
        let journal = lines(&journal_path(&out));
        assert!(
            journal.contains(&record(999).to_line()),
            "a held line survives rewrites"
        );
        writer.push(&record(998)).unwrap();
        assert_eq!(writer.finish().unwrap(), 1_000);
        assert!(!journal_path(&out).exists(), "removed at the end");
        let indices: Vec<u64> = lines(&out)
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["index"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(indices, (0..1_000).collect::<Vec<_>>());
    }
}
