//! A small client for OpenAI-compatible `POST {base_url}/chat/completions`, on reqwest.
//!
//! TLS is not compiled in (the mock needs none, and a TLS stack is a large build): an
//! `https://` base URL is refused with [`ClientError::TlsNotCompiledIn`]. Reach an https
//! endpoint through a local plain-HTTP proxy, or point at a local server. Proxies from the
//! environment (`HTTP_PROXY`, ...) apply, except to loopback addresses, which are always
//! reached directly.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use gate_core::{Backpressure, Elapsed, TokenUsage, hint};
use http::{HeaderMap, StatusCode, header};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use crate::mock::estimate_tokens;

/// The most of a response body read: a chat completion is far smaller, and a hostile or
/// broken server must not fill memory.
const MAX_BODY: usize = 8 << 20;

/// A chat-completions client: one connection pool, one model, an optional API key.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<String>,
    model: String,
    max_tokens: u64,
}

/// The base URL could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL does not parse.
    InvalidUrl(String),
    /// The URL is `https://`, and this build speaks plain HTTP only.
    TlsNotCompiledIn(String),
    /// The HTTP client could not be built.
    Build(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(url) => write!(f, "invalid base url `{url}`"),
            Self::TlsNotCompiledIn(url) => write!(
                f,
                "`{url}` needs TLS, which this build does not include; use an http:// endpoint \
                 (a local server, or a local proxy in front of the https one)"
            ),
            Self::Build(e) => write!(f, "cannot build the http client: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// 429: the server's rate or concurrency limit was hit; a later retry may pass.
    RateLimited {
        /// The server's `retry-after-ms` or `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 429 `insufficient_quota`: billing, not rate. Retrying will not help.
    QuotaExceeded {
        /// The server's message.
        message: String,
    },
    /// 429 "Request too large": the request needs more tokens than the limit ever allows.
    /// Retrying will not help.
    TooLarge {
        /// The server's message.
        message: String,
    },
    /// 503: the server is overloaded.
    Unavailable {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Another 5xx.
    Server(u16),
    /// A 4xx other than 429: retrying will not help.
    Rejected {
        /// The status code.
        status: u16,
        /// The start of the body.
        message: String,
    },
    /// The connection failed.
    Transport(String),
    /// The attempt ran past its timeout (a retry policy's, or [`Attempt::within`]'s).
    ///
    /// [`Attempt::within`]: gate_core::retry::Attempt::within
    TimedOut,
    /// A 200 whose body was not a chat completion.
    Malformed(String),
}

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        Self::TimedOut
    }
}

impl ApiError {
    /// Whether retrying may help: overload, server errors and transport errors.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Self::Rejected { .. }
                | Self::Malformed(_)
                | Self::QuotaExceeded { .. }
                | Self::TooLarge { .. }
        )
    }

    /// Whether the server answered 429, for whatever reason.
    pub fn is_too_many_requests(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } | Self::TooLarge { .. }
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited { retry_after } => {
                f.write_str("429 too many requests")?;
                if let Some(d) = retry_after {
                    write!(f, " (retry after {}ms)", d.as_millis())?;
                }
                Ok(())
            }
            Self::QuotaExceeded { message } => write!(f, "429 insufficient quota: {message}"),
            Self::TooLarge { message } => write!(f, "429 request too large: {message}"),
            Self::Unavailable { .. } => f.write_str("503 service unavailable"),
            Self::Server(status) => write!(f, "server error {status}"),
            Self::Rejected { status, message } => write!(f, "rejected with {status}: {message}"),
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Malformed(e) => write!(f, "malformed response: {e}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after } => *retry_after,
            _ => None,
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::QuotaExceeded { .. } | Self::TooLarge { .. })
    }
}

/// A chat completion's text, its usage, and the response's headers (for the server's
/// `x-ratelimit-*`).
#[derive(Debug, Clone)]
pub struct Completion {
    /// `choices[0].message.content`.
    pub content: String,
    /// `usage`, if the server sent it.
    pub usage: Option<Usage>,
    /// The response's headers.
    pub headers: HeaderMap,
}

impl TokenUsage for Completion {
    fn tokens_used(&self) -> Option<u64> {
        self.usage.map(|u| u.total_tokens)
    }
}

/// A response's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the completion.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl ChatClient {
    /// A client for `{base_url}/chat/completions` (`base_url` like
    /// `http://127.0.0.1:8080/v1`), sending `Authorization: Bearer {api_key}` if given, and
    /// asking for at most 50 tokens a completion.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: impl Into<String>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/');
        if base.starts_with("https://") {
            return Err(ClientError::TlsNotCompiledIn(base_url.to_owned()));
        }
        let endpoint = Url::parse(&format!("{base}/chat/completions"))
            .map_err(|_| ClientError::InvalidUrl(base_url.to_owned()))?;
        if endpoint.scheme() != "http" || endpoint.host().is_none() {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        let mut http = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30));
        if is_loopback(&endpoint) {
            http = http.no_proxy();
        }
        let http = http
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            api_key,
            model: model.into(),
            max_tokens: 50,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The `max_tokens` each request asks for.
    pub fn max_tokens(&self) -> u64 {
        self.max_tokens
    }

    /// The tokens a request for `prompt` may spend, as OpenAI counts them on admission: the
    /// prompt's characters / 4 (rounded up) plus `max_tokens`.
    pub fn estimate(&self, prompt: &str) -> u64 {
        estimate_tokens(prompt) + self.max_tokens
    }

    /// Asks for a completion of `prompt` and returns its text.
    pub async fn complete(&self, prompt: &str) -> Result<String, ApiError> {
        self.chat(prompt).await.map(|c| c.content)
    }

    /// Asks for a completion of `prompt` and returns it with its usage and headers.
    pub async fn chat(&self, prompt: &str) -> Result<Completion, ApiError> {
        let body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
        });
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = read_capped(response).await?;
        match status {
            StatusCode::OK => completion(&body, headers),
            StatusCode::TOO_MANY_REQUESTS => Err(too_many_requests(&body, &headers)),
            StatusCode::SERVICE_UNAVAILABLE => Err(ApiError::Unavailable {
                retry_after: hint::retry_after(&headers),
            }),
            s if s.is_server_error() => Err(ApiError::Server(s.as_u16())),
            s => Err(ApiError::Rejected {
                status: s.as_u16(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The body, up to [`MAX_BODY`] bytes; a longer one is a transport error.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ApiError::Transport(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::Transport(format!(
                "response body larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A 429 by its body: `insufficient_quota` and "Request too large" are not worth retrying.
fn too_many_requests(body: &[u8], headers: &HeaderMap) -> ApiError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        message: String,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<String>,
    }
    let detail = serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error);
    match detail {
        Some(d) if d.code.as_deref() == Some("insufficient_quota") => ApiError::QuotaExceeded {
            message: d.message.chars().take(200).collect(),
        },
        Some(d)
            if d.kind.as_deref() == Some("tokens")
                && d.message.starts_with("Request too large") =>
        {
            ApiError::TooLarge {
                message: d.message.chars().take(200).collect(),
            }
        }
        _ => ApiError::RateLimited {
            // `retry-after-ms` (OpenAI's, precise) or else `Retry-After`.
            retry_after: hint::retry_after(headers),
        },
    }
}

/// `choices[0].message.content` and `usage` of a chat completion.
fn completion(body: &[u8], headers: HeaderMap) -> Result<Completion, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    let content = value["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Malformed("no choices[0].message.content".into()))?;
    let usage = serde_json::from_value(value["usage"].clone()).ok();
    Ok(Completion {
        content,
        usage,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use gate_core::hint::retry_after;

    use super::*;

    #[test]
    fn https_is_refused_with_a_clear_reason() {
        let err = ChatClient::new("https://api.openai.com/v1", None, "m").unwrap_err();
        assert!(matches!(err, ClientError::TlsNotCompiledIn(_)));
        assert!(err.to_string().contains("TLS"));
        assert!(ChatClient::new("not a url", None, "m").is_err());
        assert!(ChatClient::new("ftp://127.0.0.1/v1", None, "m").is_err());
        let ok = ChatClient::new("http://127.0.0.1:9/v1/", None, "m").unwrap();
        assert_eq!(
            ok.endpoint().as_str(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert!(is_loopback(ok.endpoint()));
        assert!(is_loopback(&Url::parse("http://localhost:1/").unwrap()));
        assert!(is_loopback(&Url::parse("http://[::1]:1/").unwrap()));
        assert!(!is_loopback(&Url::parse("http://example.com/").unwrap()));
    }

    #[test]
    fn retry_after_prefers_milliseconds_then_seconds() {
        let mut h = header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        h.insert("retry-after-ms", "NaN".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn completion_reads_the_first_choice_and_the_usage() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],
            "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let c = completion(body, HeaderMap::new()).unwrap();
        assert_eq!(c.content, "hi");
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
                total_tokens: 4
            })
        );
        assert!(matches!(
            completion(b"{}", HeaderMap::new()),
            Err(ApiError::Malformed(_))
        ));
    }

    #[test]
    fn a_429_is_read_by_its_body() {
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", "150".parse().unwrap());
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = too_many_requests(quota, &h);
        assert!(
            matches!(e, ApiError::QuotaExceeded { .. }) && !e.is_transient() && !e.is_overload()
        );
        let large = br#"{"error":{"message":"Request too large for m on tokens per min (TPM): Limit 10, Requested 20.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = too_many_requests(large, &h);
        assert!(matches!(e, ApiError::TooLarge { .. }) && !e.is_transient() && e.is_permanent());
        let rate = br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = too_many_requests(rate, &h);
        assert_eq!(
            e,
            ApiError::RateLimited {
                retry_after: Some(Duration::from_millis(150))
            }
        );
        assert!(e.is_transient() && e.is_overload() && e.is_too_many_requests());
        assert!(!e.is_permanent());
        // Not JSON at all: still a rate limit.
        assert!(matches!(
            too_many_requests(b"<html>", &h),
            ApiError::RateLimited { .. }
        ));
    }
}
