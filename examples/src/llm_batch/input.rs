//! The input, read lazily: one chat-completions request body per line, parsed into a
//! [`Line`] with its token estimate only when the runner has room for it.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

/// `max_tokens` assumed for a request that sets none (nor `max_completion_tokens`): the
/// estimate must charge something for the completion, the settle corrects it from the usage
/// the server reports, and too much is safer than too little (OpenAI documents no default;
/// the mock charges this).
pub const DEFAULT_MAX_TOKENS: u64 = 1_024;

/// One input line, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its position in the input, from 0 (the output's `"index"`).
    pub index: u64,
    /// The request body, without `"metadata"`.
    pub body: Map<String, Value>,
    /// The line's `"metadata"`, echoed in the output (`null` if it had none).
    pub metadata: Value,
    /// The tokens the server will charge on admission: see [`estimate`].
    pub estimate: u64,
}

/// Why a line cannot be sent (exit status 2, with its line number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// 1-based, as editors count.
    pub line: u64,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "input line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for InputError {}

/// The tokens OpenAI charges a chat-completions request when it admits it: the prompt's
/// characters / 4 (rounded up; its own rule of thumb for English, no tokenizer needed) plus
/// `max_tokens` (or `max_completion_tokens`, else [`DEFAULT_MAX_TOKENS`]) for each of the `n`
/// choices asked for. Every string in `messages` counts (content, text parts, names, tool
/// call arguments), so an estimate is never below what the text alone costs. At least 1.
pub fn estimate(body: &Map<String, Value>) -> u64 {
    let prompt_chars = body.get("messages").map_or(0, string_chars);
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let choices = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    prompt_chars
        .div_ceil(4)
        .saturating_add(max_tokens.saturating_mul(choices))
        .max(1)
}

/// Characters in every string inside `value`.
fn string_chars(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(items) => items.iter().map(string_chars).fold(0, u64::saturating_add),
        Value::Object(fields) => fields
            .values()
            .map(string_chars)
            .fold(0, u64::saturating_add),
        _ => 0,
    }
}

/// Parses line `index` (0-based) of the input.
pub fn parse_line(index: u64, text: &str) -> Result<Line, InputError> {
    let error = |message: String| InputError {
        line: index + 1,
        message,
    };
    let mut body = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return Err(error("expected a JSON object (a request body)".into())),
        Err(e) if text.trim().is_empty() => {
            return Err(error(format!("empty line ({e}); every line is a request")));
        }
        Err(e) => return Err(error(format!("not JSON: {e}"))),
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(error("no `messages` array".into()));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(error(
            "`\"stream\": true` is not supported: the output holds whole responses".into(),
        ));
    }
    let metadata = body.remove("metadata").unwrap_or(Value::Null);
    let estimate = estimate(&body);
    Ok(Line {
        index,
        body,
        metadata,
        estimate,
    })
}

/// The input file, read a line at a time.
#[derive(Debug)]
pub struct Input {
    lines: Lines<BufReader<File>>,
    next: u64,
}

impl Input {
    /// Opens `path`.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path).await?;
        Ok(Self {
            lines: BufReader::with_capacity(1 << 16, file).lines(),
            next: 0,
        })
    }

    /// The index the next line will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next line, unparsed, with its index; `None` at the end. A line that is not
    /// UTF-8 or cannot be read is an [`InputError`].
    pub async fn next_raw(&mut self) -> Option<Result<(u64, String), InputError>> {
        let index = self.next;
        match self.lines.next_line().await {
            Ok(Some(text)) => {
                self.next += 1;
                Some(Ok((index, text)))
            }
            Ok(None) => None,
            Err(e) => Some(Err(InputError {
                line: index + 1,
                message: format!("cannot be read: {e}"),
            })),
        }
    }

    /// The next line, parsed.
    pub async fn next_line(&mut self) -> Option<Result<Line, InputError>> {
        let raw = self.next_raw().await?;
        Some(raw.and_then(|(index, text)| parse_line(index, &text)))
    }
}

/// Counts the lines of `path` without keeping them (for the progress bar's total); `None`
/// for what is not a regular file (a pipe can be read only once).
pub fn count_lines(path: &Path) -> std::io::Result<Option<u64>> {
    use std::io::Read;
    if !std::fs::metadata(path)?.is_file() {
        return Ok(None);
    }
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[n - 1];
    }
    // A last line without its newline is a line too.
    Ok(Some(lines + u64::from(last != b'\n')))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        }
    }

    #[test]
    fn estimate_is_prompt_characters_over_four_plus_max_tokens_per_choice() {
        let body = object(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "abcdefgh"}],
            "max_tokens": 100,
        }));
        // "user" + "abcdefgh" = 12 characters = 3 tokens, + 100.
        assert_eq!(estimate(&body), 103);
        let two_choices = object(json!({
            "messages": [{"role": "user", "content": [{"type": "text", "text": "abcde"}]}],
            "max_completion_tokens": 10,
            "n": 2,
        }));
        // "user" "text" "abcde": 13 characters, rounded up to 4 tokens, + 2 × 10.
        assert_eq!(estimate(&two_choices), 24);
        let no_max = object(json!({"messages": []}));
        assert_eq!(estimate(&no_max), DEFAULT_MAX_TOKENS);
        let zero = object(json!({"messages": [], "max_tokens": 0}));
        assert_eq!(estimate(&zero), 1, "never zero");
        let huge = object(json!({"messages": [], "max_tokens": u64::MAX, "n": 3}));
        assert_eq!(estimate(&huge), u64::MAX, "saturates");
    }

    #[test]
    fn metadata_is_taken_out_of_the_body() {
        let line = parse_line(
            4,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"id":7}}"#,
        )
        .unwrap();
        assert_eq!(line.index, 4);
        assert_eq!(line.metadata, json!({"id": 7}));
        assert!(!line.body.contains_key("metadata"));
        assert_eq!(line.body["model"], "m");
    }

    #[test]
    fn a_bad_line_names_its_line_number() {
        let message = |text: &str| parse_line(9, text).unwrap_err();
        assert_eq!(message("{").line, 10);
        assert!(message("{").message.starts_with("not JSON"));
        assert!(message("[1]").message.contains("JSON object"));
        assert!(message("").message.starts_with("empty line"));
        assert!(message(r#"{"model":"m"}"#).message.contains("messages"));
        let stream = message(r#"{"messages":[],"stream":true}"#);
        assert!(stream.message.contains("stream"), "{stream}");
        assert_eq!(
            stream.to_string(),
            format!("input line 10: {}", stream.message)
        );
    }

    #[tokio::test]
    async fn reads_lazily_and_counts_lines() {
        let dir = tempdir();
        let path = dir.join("in.jsonl");
        std::fs::write(
            &path,
            "{\"messages\":[]}\nnot json\n{\"messages\":[],\"max_tokens\":3}",
        )
        .unwrap();
        assert_eq!(count_lines(&path).unwrap(), Some(3));
        let mut input = Input::open(&path).await.unwrap();
        assert_eq!(input.next_line().await.unwrap().unwrap().index, 0);
        assert_eq!(input.next_line().await.unwrap().unwrap_err().line, 2);
        let third = input.next_line().await.unwrap().unwrap();
        assert_eq!((third.index, third.estimate), (2, 3));
        assert!(input.next_line().await.is_none());
        assert_eq!(input.position(), 3);
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(count_lines(&path).unwrap(), Some(2));
        std::fs::write(&path, "").unwrap();
        assert_eq!(count_lines(&path).unwrap(), Some(0));
        assert_eq!(count_lines(&dir).unwrap(), None, "not a regular file");
    }

    /// A fresh directory under the system's temporary one.
    pub(crate) fn tempdir() -> std::path::PathBuf {
        super::super::testdir("input")
    }
}
