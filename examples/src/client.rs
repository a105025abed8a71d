//! A minimal client for OpenAI-compatible `POST {base_url}/chat/completions`, over plain
//! HTTP/1 with hyper.
//!
//! TLS is not compiled in (it would pull a TLS stack this workspace does not carry): an
//! `https://` base URL is refused with [`ClientError::TlsNotCompiledIn`]. Reach an https
//! endpoint through a local plain-HTTP proxy, or point at a local server.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use gate_core::{Backpressure, hint};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

/// A chat-completions client: one connection pool, one model, an optional API key.
#[derive(Clone)]
pub struct ChatClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
    api_key: Option<String>,
    model: String,
}

/// The base URL could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL does not parse.
    InvalidUrl(String),
    /// The URL is `https://`, and this build speaks plain HTTP only.
    TlsNotCompiledIn(String),
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
        }
    }
}

impl std::error::Error for ClientError {}

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// 429: the server's rate or concurrency limit was hit.
    RateLimited {
        /// The server's `retry-after-ms` or `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
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
    /// A 200 whose body was not a chat completion.
    Malformed(String),
}

impl ApiError {
    /// Whether retrying may help: overload, server errors and transport errors.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected { .. } | Self::Malformed(_))
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
            Self::Unavailable { .. } => f.write_str("503 service unavailable"),
            Self::Server(status) => write!(f, "server error {status}"),
            Self::Rejected { status, message } => write!(f, "rejected with {status}: {message}"),
            Self::Transport(e) => write!(f, "transport error: {e}"),
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
}

impl ChatClient {
    /// A client for `{base_url}/chat/completions` (`base_url` like
    /// `http://127.0.0.1:8080/v1`), sending `Authorization: Bearer {api_key}` if given.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: impl Into<String>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/');
        if base.starts_with("https://") {
            return Err(ClientError::TlsNotCompiledIn(base_url.to_owned()));
        }
        let endpoint: Uri = format!("{base}/chat/completions")
            .parse()
            .map_err(|_| ClientError::InvalidUrl(base_url.to_owned()))?;
        if endpoint.scheme_str() != Some("http") || endpoint.host().is_none() {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Ok(Self {
            http,
            endpoint,
            api_key,
            model: model.into(),
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// Asks for a completion of `prompt` (at most 50 tokens) and returns its text.
    pub async fn complete(&self, prompt: &str) -> Result<String, ApiError> {
        let body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 50,
        });
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.api_key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let status = response.status();
        // `retry-after-ms` (OpenAI's, precise) or else `Retry-After`.
        let retry_after = hint::retry_after(response.headers());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?
            .to_bytes();
        match status {
            StatusCode::OK => content(&body),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::RateLimited { retry_after }),
            StatusCode::SERVICE_UNAVAILABLE => Err(ApiError::Unavailable { retry_after }),
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
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// `choices[0].message.content` of a chat completion.
fn content(body: &[u8]) -> Result<String, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    value["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Malformed("no choices[0].message.content".into()))
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
        let ok = ChatClient::new("http://127.0.0.1:9/v1/", None, "m").unwrap();
        assert_eq!(ok.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
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
    fn content_reads_the_first_choice() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(content(body), Ok("hi".into()));
        assert!(matches!(content(b"{}"), Err(ApiError::Malformed(_))));
    }
}
