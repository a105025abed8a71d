//! [`TokenUsage`]: what a response says it spent, for settling a token budget.

/// Implemented by a call's success value when it reports the tokens it used (an LLM API's
/// `usage`), so that a token budget is settled from it without the caller's help:
/// `#[gated(tokens = .., cost = ..)]` settles each attempt's reservation with
/// [`tokens_used`](Self::tokens_used) (see
/// [`LimiterPermit::settle`](crate::LimiterPermit::settle) for the rules).
///
/// ```
/// use gate_core::TokenUsage;
///
/// struct Completion {
///     text: String,
///     total_tokens: Option<u64>,
/// }
///
/// impl TokenUsage for Completion {
///     fn tokens_used(&self) -> Option<u64> {
///         self.total_tokens
///     }
/// }
/// # let c = Completion { text: String::new(), total_tokens: Some(3) };
/// # assert_eq!(c.tokens_used(), Some(3));
/// # let _ = c.text;
/// ```
pub trait TokenUsage {
    /// The tokens the call used in all (prompt and completion), if the response says;
    /// `None` leaves the reservation as it was.
    fn tokens_used(&self) -> Option<u64>;
}

impl<T: TokenUsage + ?Sized> TokenUsage for &T {
    fn tokens_used(&self) -> Option<u64> {
        (**self).tokens_used()
    }
}

impl<T: TokenUsage + ?Sized> TokenUsage for Box<T> {
    fn tokens_used(&self) -> Option<u64> {
        (**self).tokens_used()
    }
}
