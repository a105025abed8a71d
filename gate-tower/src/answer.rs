//! [`Answer`]: what a response says about the server's load, in [`Reject`](crate::Reject)
//! mode, where the layer takes any tower service.

use gate_core::Outcome;
use http::Response;

use crate::pushback;

/// A response of the inner service, as a layer in [`Reject`](crate::Reject) mode
/// ([`GateLayer::refuse_with_error`](crate::GateLayer::refuse_with_error)) reads it to tell
/// its limiter how the call went.
///
/// An HTTP response is read as in the default mode: a 429 or 503 (or a trailers-only gRPC
/// `RESOURCE_EXHAUSTED` or `UNAVAILABLE`) is an [`Outcome::Overload`] with its
/// `retry-after-ms`, `Retry-After` or `grpc-retry-pushback-ms`, which pauses the limiter as
/// the response arrives; anything else is a success. So a client-side layer in front of an
/// HTTP client (hyper's, or reqwest's through `http::Response::from`) learns from the
/// upstream's 429s in either mode.
///
/// Values that are not HTTP responses (the integers, `bool`, `char`, `()`, `String`,
/// `&str`, `Vec`, `Option`, `Box` and [`bytes::Bytes`]) are successes. For a response type
/// of your own, implement it, with the default method (a success) or one that reads it:
///
/// ```
/// use gate_core::Outcome;
/// use gate_tower::Answer;
///
/// struct Reply {
///     busy: bool,
/// }
///
/// impl Answer for Reply {
///     fn outcome(&self) -> Outcome {
///         if self.busy {
///             Outcome::Overload { retry_after: None }
///         } else {
///             Outcome::Success
///         }
///     }
/// }
///
/// struct Quiet;
/// impl Answer for Quiet {}
/// # assert_eq!(Quiet.outcome(), Outcome::Success);
/// # assert_eq!(Reply { busy: true }.outcome(), Outcome::Overload { retry_after: None });
/// ```
///
/// A type of another crate, which the orphan rule keeps you from implementing it for, can
/// be mapped into one of these (`tower::ServiceBuilder::map_response`) below the layer.
pub trait Answer {
    /// What this response says about the server's load; a success unless implemented.
    fn outcome(&self) -> Outcome {
        Outcome::Success
    }
}

impl<B> Answer for Response<B> {
    #[inline]
    fn outcome(&self) -> Outcome {
        pushback::outcome_of_head(self.status(), self.headers())
    }
}

macro_rules! successes {
    ($($ty:ty),* $(,)?) => {
        $(impl Answer for $ty {})*
    };
}

successes!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    bool,
    char,
    (),
    String,
    bytes::Bytes,
);

impl Answer for &str {}

impl<T> Answer for Vec<T> {}

impl<T> Answer for Option<T> {}

impl<T: ?Sized> Answer for Box<T> {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::*;

    fn response(status: StatusCode, headers: &[(&'static str, &'static str)]) -> Response<()> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http_responses_read_as_the_default_mode_reads_them() {
        let ok = response(StatusCode::OK, &[("retry-after", "3")]);
        assert_eq!(ok.outcome(), Outcome::Success);
        let limited = response(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "3"), ("retry-after-ms", "250")],
        );
        assert_eq!(
            limited.outcome(),
            Outcome::Overload {
                retry_after: Some(Duration::from_millis(250))
            }
        );
        let unavailable = response(StatusCode::SERVICE_UNAVAILABLE, &[]);
        assert_eq!(
            unavailable.outcome(),
            Outcome::Overload { retry_after: None }
        );
        let grpc = response(
            StatusCode::OK,
            &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "40")],
        );
        assert_eq!(
            grpc.outcome(),
            Outcome::Overload {
                retry_after: Some(Duration::from_millis(40))
            }
        );
        assert_eq!(
            response(StatusCode::NOT_FOUND, &[]).outcome(),
            Outcome::Success
        );
    }

    #[test]
    fn plain_values_are_successes() {
        assert_eq!(7u32.outcome(), Outcome::Success);
        assert_eq!(String::from("429").outcome(), Outcome::Success);
        assert_eq!("503".outcome(), Outcome::Success);
        assert_eq!(Some(1).outcome(), Outcome::Success);
        assert_eq!(Box::new(()).outcome(), Outcome::Success);
    }
}
