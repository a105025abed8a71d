//! The OpenAI wire format: reading a chat-completions request as OpenAI validates it, and
//! writing replies, chunks and errors as OpenAI writes them.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

/// The model ids `GET /v1/models` lists. Chat completions serve any model name.
pub const MODELS: [&str; 4] = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"];

/// Tokens in `text` by OpenAI's rule of thumb: a token is about 4 characters (rounded up).
/// The mock charges and reports a prompt's tokens by it, so a client estimating the same
/// way settles exactly.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The tokens (prompt + completion) the mock's `usage` reports for one user message `prompt`
/// asking for at most `max_tokens`: what a harness needs to know a batch's
/// [`ideal_makespan`](super::MockConfig::ideal_makespan) before running it.
pub fn usage_for(prompt: &str, max_tokens: u64) -> u64 {
    let request = ChatRequest {
        model: String::new(),
        text: prompt.to_owned(),
        last: prompt.to_owned(),
        max_tokens: Some(max_tokens),
        stream: false,
        include_usage: false,
    };
    request.prompt_tokens() + Reply::to(&request, max_tokens).tokens()
}

/// A well-formed chat-completions request, reduced to what the mock uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    /// Every text of every message (contents, text parts, refusals, tool calls' names and
    /// arguments), joined by newlines: what the prompt's tokens are counted from.
    pub(crate) text: String,
    /// The last message's text, for the reply's topic and the fault hashes.
    pub(crate) last: String,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

impl ChatRequest {
    pub(crate) fn prompt_tokens(&self) -> u64 {
        estimate_tokens(&self.text)
    }
}

/// A 4xx as OpenAI sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidRequest {
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

impl InvalidRequest {
    fn new(message: impl Into<String>, param: impl Into<String>, code: &'static str) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
            code: Some(code),
        }
    }

    fn missing(param: String) -> Self {
        Self::new(
            format!("Missing required parameter: '{param}'."),
            param,
            "missing_required_parameter",
        )
    }

    fn invalid_type(param: String, expected: &str, got: &Value) -> Self {
        Self::new(
            format!(
                "Invalid type for '{param}': expected {expected}, but got {} instead.",
                kind(got)
            ),
            param,
            "invalid_type",
        )
    }

    fn invalid_value(param: String, got: &str, supported: &[&str]) -> Self {
        Self::new(
            format!(
                "Invalid value: '{got}'. Supported values are: {}.",
                one_of(supported)
            ),
            param,
            "invalid_value",
        )
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        error_body(
            &self.message,
            "invalid_request_error",
            self.param.as_deref(),
            self.code,
        )
    }
}

/// `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// `'a', 'b', and 'c'`, as OpenAI lists supported values.
fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// How OpenAI names a JSON value's type in its messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const ROLES: [&str; 6] = [
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
const PART_TYPES: [&str; 5] = ["text", "image_url", "input_audio", "refusal", "file"];

/// Reads a request body as OpenAI validates it: the first problem found is the answer.
pub(crate) fn parse(body: &[u8]) -> Result<ChatRequest, InvalidRequest> {
    let value: Value = serde_json::from_slice(body).map_err(|_| InvalidRequest {
        message: "We could not parse the JSON body of your request. (HINT: This likely means \
                  you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
                  payload, but what was sent was not valid JSON.)"
            .into(),
        param: None,
        code: None,
    })?;
    let Value::Object(request) = value else {
        return Err(InvalidRequest::invalid_type(
            "body".into(),
            "an object",
            &value,
        ));
    };
    let model = match request.get("model") {
        None => return Err(InvalidRequest::missing("model".into())),
        Some(Value::String(model)) => model.clone(),
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                "model".into(),
                "a string",
                other,
            ));
        }
    };
    let messages = match request.get("messages") {
        None => return Err(InvalidRequest::missing("messages".into())),
        Some(Value::Array(messages)) => messages,
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                "messages".into(),
                "an array",
                other,
            ));
        }
    };
    if messages.is_empty() {
        return Err(InvalidRequest::new(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got \
             an empty array instead.",
            "messages",
            "empty_array",
        ));
    }
    let mut texts = Vec::new();
    let mut last = String::new();
    // Tool call ids the previous assistant message asked for, which `tool` messages answer.
    let mut open_calls: HashSet<String> = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let message_text = read_message(i, message, &mut open_calls)?;
        last.clone_from(&message_text);
        texts.push(message_text);
    }
    let max_tokens = match (
        read_max("max_completion_tokens", &request)?,
        read_max("max_tokens", &request)?,
    ) {
        (Some(n), _) | (None, Some(n)) => Some(n),
        (None, None) => None,
    };
    let stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                "stream".into(),
                "a boolean",
                other,
            ));
        }
    };
    let include_usage = match request.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(_) if !stream => {
            return Err(InvalidRequest::new(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
                "invalid_value",
            ));
        }
        Some(Value::Object(options)) => match options.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(InvalidRequest::invalid_type(
                    "stream_options.include_usage".into(),
                    "a boolean",
                    other,
                ));
            }
        },
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                "stream_options".into(),
                "an object",
                other,
            ));
        }
    };
    match request.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(InvalidRequest::new(
                "The mock serves one choice a request: 'n' must be 1.",
                "n",
                "unsupported_value",
            ));
        }
    }
    Ok(ChatRequest {
        model,
        text: texts.join("\n"),
        last,
        max_tokens,
        stream,
        include_usage,
    })
}

/// `max_tokens` or `max_completion_tokens`: an integer of at least 1, or absent.
fn read_max(name: &str, request: &Map<String, Value>) -> Result<Option<u64>, InvalidRequest> {
    match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => Ok(n.as_u64()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Err(InvalidRequest::new(
            format!(
                "Invalid '{name}': integer below minimum value. Expected a value >= 1, but got \
                 {n} instead."
            ),
            name,
            "integer_below_min_value",
        )),
        Some(other) => Err(InvalidRequest::invalid_type(
            name.into(),
            "an integer",
            other,
        )),
    }
}

/// Checks message `i` and returns its text.
fn read_message(
    i: usize,
    message: &Value,
    open_calls: &mut HashSet<String>,
) -> Result<String, InvalidRequest> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let Value::Object(message) = message else {
        return Err(InvalidRequest::invalid_type(
            format!("messages[{i}]"),
            "an object",
            message,
        ));
    };
    let role = match message.get("role") {
        None => return Err(InvalidRequest::missing(at("role"))),
        Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.as_str(),
        Some(Value::String(role)) => {
            return Err(InvalidRequest::invalid_value(at("role"), role, &ROLES));
        }
        Some(other) => return Err(InvalidRequest::invalid_type(at("role"), "a string", other)),
    };
    let mut text = String::new();
    let has_calls = match message.get("tool_calls") {
        None | Some(Value::Null) => false,
        Some(_) if role != "assistant" => {
            return Err(InvalidRequest::new(
                "Invalid parameter: only messages with role 'assistant' can have 'tool_calls'.",
                at("tool_calls"),
                "invalid_value",
            ));
        }
        Some(Value::Array(calls)) => {
            open_calls.clear();
            for (j, call) in calls.iter().enumerate() {
                let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
                    InvalidRequest::missing(format!("messages[{i}].tool_calls[{j}].id"))
                })?;
                let function = call.get("function").ok_or_else(|| {
                    InvalidRequest::missing(format!("messages[{i}].tool_calls[{j}].function"))
                })?;
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        InvalidRequest::missing(format!(
                            "messages[{i}].tool_calls[{j}].function.name"
                        ))
                    })?;
                let arguments = function
                    .get("arguments")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        InvalidRequest::missing(format!(
                            "messages[{i}].tool_calls[{j}].function.arguments"
                        ))
                    })?;
                open_calls.insert(id.to_owned());
                push_text(&mut text, name);
                push_text(&mut text, arguments);
            }
            !calls.is_empty()
        }
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                at("tool_calls"),
                "an array",
                other,
            ));
        }
    };
    if role == "tool" {
        let id = match message.get("tool_call_id") {
            None => return Err(InvalidRequest::missing(at("tool_call_id"))),
            Some(Value::String(id)) => id,
            Some(other) => {
                return Err(InvalidRequest::invalid_type(
                    at("tool_call_id"),
                    "a string",
                    other,
                ));
            }
        };
        if !open_calls.contains(id) {
            return Err(InvalidRequest::new(
                "Invalid parameter: messages with role 'tool' must be a response to a preceding \
                 message with 'tool_calls'.",
                format!("messages.[{i}].role"),
                "invalid_value",
            ));
        }
    } else if !has_calls {
        // Any other message closes the tool calls asked for before it.
        open_calls.clear();
    }
    match message.get("content") {
        // An assistant message may carry only tool calls (or a function call, or nothing).
        None | Some(Value::Null) if role == "assistant" => {}
        None => return Err(InvalidRequest::missing(at("content"))),
        Some(Value::String(s)) => push_text(&mut text, s),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                read_part(&format!("messages[{i}].content[{j}]"), part, &mut text)?;
            }
        }
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                at("content"),
                "one of a string or array of objects",
                other,
            ));
        }
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        push_text(&mut text, refusal);
    }
    Ok(text)
}

/// Checks one content part; text and refusal parts count towards the prompt.
fn read_part(at: &str, part: &Value, text: &mut String) -> Result<(), InvalidRequest> {
    let Value::Object(part) = part else {
        return Err(InvalidRequest::invalid_type(at.into(), "an object", part));
    };
    let kind = match part.get("type") {
        None => return Err(InvalidRequest::missing(format!("{at}.type"))),
        Some(Value::String(kind)) if PART_TYPES.contains(&kind.as_str()) => kind.as_str(),
        Some(Value::String(kind)) => {
            return Err(InvalidRequest::invalid_value(
                format!("{at}.type"),
                kind,
                &PART_TYPES,
            ));
        }
        Some(other) => {
            return Err(InvalidRequest::invalid_type(
                format!("{at}.type"),
                "a string",
                other,
            ));
        }
    };
    if matches!(kind, "text" | "refusal") {
        match part.get(kind) {
            None => return Err(InvalidRequest::missing(format!("{at}.{kind}"))),
            Some(Value::String(s)) => push_text(text, s),
            Some(other) => {
                return Err(InvalidRequest::invalid_type(
                    format!("{at}.{kind}"),
                    "a string",
                    other,
                ));
            }
        }
    }
    Ok(())
}

fn push_text(text: &mut String, s: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(s);
}

/// The mock's reply to a request: its words (a word is a token) and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) words: Vec<String>,
    pub(crate) finish_reason: &'static str,
}

const VERSE: [&str; 15] = [
    "requests", "in", "a", "line,", "the", "gate", "lets", "ten", "through", "at", "once,", "none",
    "are", "turned", "away.",
];

impl Reply {
    /// Between 16 and 256 words chosen from the whole prompt's text, at most `max_tokens`.
    pub(crate) fn to(request: &ChatRequest, max_tokens: u64) -> Self {
        let natural = 16 + hash(&request.text) % 241;
        let len = natural.min(max_tokens);
        let topic = request
            .last
            .split_whitespace()
            .last()
            .unwrap_or("nothing")
            .to_owned();
        let mut words: Vec<String> = ["Mock", "haiku", "about"]
            .into_iter()
            .map(str::to_owned)
            .chain([format!("{topic}:")])
            .chain(VERSE.iter().cycle().map(|w| (*w).to_owned()))
            .take(usize::try_from(len).unwrap_or(usize::MAX))
            .collect();
        words.shrink_to_fit();
        Self {
            words,
            finish_reason: if natural > max_tokens {
                "length"
            } else {
                "stop"
            },
        }
    }

    pub(crate) fn tokens(&self) -> u64 {
        self.words.len() as u64
    }

    pub(crate) fn content(&self) -> String {
        self.words.join(" ")
    }
}

pub(crate) fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// `usage`, with the detail objects OpenAI sends.
pub(crate) fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// A `chat.completion`.
pub(crate) fn completion(id: &str, created: u64, model: &str, reply: &Reply, prompt: u64) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": reply.content(),
                "refusal": null,
                "annotations": [],
            },
            "logprobs": null,
            "finish_reason": reply.finish_reason,
        }],
        "usage": usage(prompt, reply.tokens()),
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    })
}

/// A `chat.completion.chunk` with one choice; `usage: null` when the client asked for usage
/// (OpenAI then sends the field on every chunk).
pub(crate) fn chunk(
    id: &str,
    created: u64,
    model: &str,
    delta: Value,
    finish_reason: Option<&str>,
    include_usage: bool,
) -> Value {
    let mut chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
    });
    if include_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

/// The last chunk of a stream with `include_usage`: no choices, the usage.
pub(crate) fn usage_chunk(
    id: &str,
    created: u64,
    model: &str,
    prompt: u64,
    completion: u64,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
        "choices": [],
        "usage": usage(prompt, completion),
    })
}

/// A `model` object.
pub(crate) fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(body: Value) -> Result<ChatRequest, InvalidRequest> {
        parse(body.to_string().as_bytes())
    }

    #[test]
    fn a_plain_request_is_read() {
        let request = parse_json(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Write a haiku about the sea"}],
            "max_tokens": 50,
        }))
        .unwrap();
        assert_eq!(request.model, "gpt-4o-mini");
        assert_eq!(request.last, "Write a haiku about the sea");
        assert_eq!(request.prompt_tokens(), 7); // 27 characters
        assert_eq!(request.max_tokens, Some(50));
        assert!(!request.stream && !request.include_usage);
    }

    #[test]
    fn parts_tool_calls_and_tool_messages_are_accepted_and_counted() {
        let request = parse_json(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                }]},
                {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
                {"role": "assistant", "content": "It rains."},
            ],
            "max_completion_tokens": 20,
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .unwrap();
        assert_eq!(
            request.text,
            "Be brief.\nWeather?\nweather\n{\"city\":\"Oslo\"}\nrain\nIt rains."
        );
        assert_eq!(request.max_tokens, Some(20));
        assert!(request.stream && request.include_usage);
    }

    #[test]
    fn malformed_requests_get_openai_errors() {
        let err = |body: Value| parse_json(body).unwrap_err();
        let e = parse(b"{not json").unwrap_err();
        assert!(e.message.starts_with("We could not parse the JSON body"));
        assert_eq!((e.param, e.code), (None, None));

        let e = err(json!({"messages": []}));
        assert_eq!(e.message, "Missing required parameter: 'model'.");
        assert_eq!(e.code, Some("missing_required_parameter"));

        let e = err(json!({"model": "m", "messages": []}));
        assert_eq!(e.code, Some("empty_array"));

        let e = err(json!({"model": "m", "messages": [{"role": "user", "content": 3}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        assert_eq!(
            e.message,
            "Invalid type for 'messages[0].content': expected one of a string or array of \
             objects, but got an integer instead."
        );

        let e = err(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}));
        assert_eq!(e.code, Some("invalid_value"));
        assert!(
            e.message.contains("'tool', and 'developer'."),
            "{}",
            e.message
        );

        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
        );
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].text"));

        let e = err(json!({"model": "m", "messages": [{"role": "user"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));

        // A tool message must answer a tool call.
        let e = err(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_9", "content": "y"},
        ]}));
        assert!(e.message.contains("must be a response"), "{}", e.message);

        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
        );
        assert_eq!(e.code, Some("integer_below_min_value"));

        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "stream_options": {"include_usage": true}}),
        );
        assert_eq!(e.param.as_deref(), Some("stream_options"));

        let body = InvalidRequest::missing("model".into()).body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
    }

    #[test]
    fn replies_are_deterministic_and_capped_by_max_tokens() {
        let request = parse_json(json!({
            "model": "m", "messages": [{"role": "user", "content": "Write about the sea"}],
        }))
        .unwrap();
        let long = Reply::to(&request, 10_000);
        assert_eq!(long, Reply::to(&request, 10_000));
        assert!((16..=256).contains(&long.tokens()), "{}", long.tokens());
        assert_eq!(long.finish_reason, "stop");
        assert!(long.content().starts_with("Mock haiku about sea:"));
        let short = Reply::to(&request, 5);
        assert_eq!((short.tokens(), short.finish_reason), (5, "length"));
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("日本語です"), 2);
    }
}
