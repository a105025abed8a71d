//! The arguments of `#[gated(...)]`: parsed with `syn::meta::parser`, then validated together.
//!
//! Every value keeps its span (and its key's span) so that a later check can point at the
//! token to fix. Independent problems are reported together.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, Path, Token, UnOp};

use crate::duration::{self, Millis};
use crate::plan::{Delay, Plan, Policy, RateSpec, Source, TokenCost};

/// The argument names, in the order the docs list them. Adding an argument is one entry here,
/// one field in [`Args`] and one arm in [`Args::parse_one`].
pub(crate) const KEYS: &[&str] = &[
    "limit",
    "gate",
    "limiter",
    "rate",
    "burst",
    "tokens",
    "cost",
    "usage",
    "adaptive",
    "retry",
    "backoff",
    "wait",
    "max_delay",
    "jitter",
    "timeout",
    "timeout_error",
    "retry_if",
    "backpressure",
    "crate",
];

/// One argument's value, where it was written, and where its key was written.
#[derive(Debug, Clone)]
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    pub(crate) key: Span,
    pub(crate) span: Span,
}

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackoffKind {
    Fixed,
    Exponential,
}

/// Which adaptive concurrency algorithm resizes the function's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdaptiveKind {
    Aimd,
    Gradient,
}

/// The parsed arguments; `None` means "not given".
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) limit: Option<Arg<u64>>,
    pub(crate) gate: Option<Arg<Path>>,
    pub(crate) limiter: Option<Arg<Path>>,
    pub(crate) rate: Option<Arg<syn::LitStr>>,
    pub(crate) burst: Option<Arg<u32>>,
    pub(crate) tokens: Option<Arg<syn::LitStr>>,
    pub(crate) cost: Option<Arg<Expr>>,
    pub(crate) usage: Option<Arg<Expr>>,
    pub(crate) adaptive: Option<Arg<AdaptiveKind>>,
    pub(crate) retry: Option<Arg<u32>>,
    pub(crate) backoff: Option<Arg<BackoffKind>>,
    pub(crate) wait: Option<Arg<Millis>>,
    pub(crate) max_delay: Option<Arg<Millis>>,
    pub(crate) jitter: Option<Arg<bool>>,
    pub(crate) timeout: Option<Arg<Millis>>,
    pub(crate) timeout_error: Option<Arg<Expr>>,
    pub(crate) retry_if: Option<Arg<Expr>>,
    pub(crate) backpressure: Option<Arg<bool>>,
    pub(crate) krate: Option<Arg<Path>>,
}

impl Args {
    /// Parses the tokens inside `#[gated(...)]`, checking each value on its own; how the
    /// arguments fit together is checked by [`plan`](Self::plan).
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = Args::default();
        let mut errors = Errors::default();
        syn::meta::parser(|meta| args.parse_one(meta, &mut errors)).parse2(tokens)?;
        errors.finish()?;
        Ok(args)
    }

    /// Parses one `key = value`. Problems with a value are collected in `errors` so that the
    /// other arguments are still checked; only a syntax error stops parsing.
    fn parse_one(&mut self, meta: ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let key = path_name(&meta.path);
        let key_span = meta.path.span();
        if !meta.input.peek(Token![=]) {
            let example = match key.as_str() {
                "limit" => "limit = 10",
                "gate" => "gate = NAME",
                "retry" => "retry = 3",
                "jitter" => "jitter = true",
                "backpressure" => "backpressure = true",
                "rate" => "rate = \"500/min\"",
                "tokens" => "tokens = \"180000/min\"",
                "cost" => "cost = estimate(&prompt)",
                "adaptive" => "adaptive = \"aimd\"",
                _ => "key = value",
            };
            return Err(syn::Error::new(
                key_span,
                format!("expected `=` after `{key}`: arguments are written `{example}`"),
            ));
        }
        let value = ungroup(meta.value()?.parse()?);
        let key = Key {
            name: &key,
            span: key_span,
        };
        let result = match key.name {
            "limit" => key.set(&mut self.limit, &value, parse_limit),
            "gate" => key.set(&mut self.gate, &value, parse_gate),
            "limiter" => key.set(&mut self.limiter, &value, parse_limiter),
            "rate" => key.set(&mut self.rate, &value, parse_rate),
            "burst" => key.set(&mut self.burst, &value, parse_burst),
            "tokens" => key.set(&mut self.tokens, &value, parse_tokens),
            "cost" => key.set(&mut self.cost, &value, parse_cost),
            "usage" => key.set(&mut self.usage, &value, parse_usage),
            "adaptive" => key.set(&mut self.adaptive, &value, parse_adaptive),
            "retry" => key.set(&mut self.retry, &value, parse_retry),
            "backoff" => key.set(&mut self.backoff, &value, parse_backoff),
            "wait" => key.set(&mut self.wait, &value, |e| parse_duration(e, "wait")),
            "max_delay" => key.set(&mut self.max_delay, &value, |e| {
                parse_duration(e, "max_delay")
            }),
            "jitter" => key.set(&mut self.jitter, &value, |e| parse_bool(e, "jitter")),
            "backpressure" => key.set(&mut self.backpressure, &value, |e| {
                parse_bool(e, "backpressure")
            }),
            "timeout" => key.set(&mut self.timeout, &value, parse_timeout),
            "timeout_error" => key.set(&mut self.timeout_error, &value, parse_timeout_error),
            "retry_if" => key.set(&mut self.retry_if, &value, parse_retry_if),
            "crate" => key.set(&mut self.krate, &value, parse_crate),
            _ => Err(unknown_argument(key.name, key_span)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
        Ok(())
    }

    /// Checks how the arguments fit together, and says what the expansion does with them.
    /// Independent problems are reported together, in the order of the docs.
    pub(crate) fn plan(self) -> syn::Result<Plan> {
        let admission = self.source();
        let checks = self.check_options();
        let delay = self.delay();
        let ((admission, ()), delay) = join(join(admission, checks), delay)?;
        let policy = self.policy_key().map(|key| Policy {
            key,
            retries: self.retry,
            delay,
            jitter: self.jitter,
            timeout: self.timeout,
            timeout_error: self.timeout_error,
            retry_if: self.retry_if,
            cost: self.cost.map(|expr| TokenCost {
                expr,
                usage: self.usage,
            }),
            backpressure: self.backpressure.is_some_and(|b| b.value),
        });
        Ok(Plan {
            krate: self.krate.map(|k| k.value),
            admission,
            policy,
        })
    }

    /// Which limits the function has: its own (`limit`, `rate`, `adaptive`), or a shared
    /// `gate` or `limiter`.
    fn source(&self) -> syn::Result<Source> {
        let mut errors = Errors::default();
        if let Some(limiter) = &self.limiter {
            let others = [
                ("limit", self.limit.as_ref().map(|a| a.key)),
                ("gate", self.gate.as_ref().map(|a| a.key)),
                ("rate", self.rate.as_ref().map(|a| a.key)),
                ("burst", self.burst.as_ref().map(|a| a.key)),
                ("tokens", self.tokens.as_ref().map(|a| a.key)),
                ("adaptive", self.adaptive.as_ref().map(|a| a.key)),
            ];
            for (name, key) in others {
                if let Some(key) = key {
                    errors.push(syn::Error::new(
                        key,
                        format!(
                            "`{name}` cannot be used with `limiter`: the limiter you declared \
                             sets its own limits; configure it with `Limiter::builder()`"
                        ),
                    ));
                }
            }
            errors.finish()?;
            return Ok(Source::Shared {
                path: limiter.clone(),
            });
        }
        if let Some(gate) = &self.gate {
            if self.limit.is_some() {
                errors.push(syn::Error::new(
                    gate.key,
                    "`limit` and `gate` cannot be used together: `limit = N` gives the function \
                     a gate of its own, `gate = NAME` uses a gate you declared",
                ));
            }
            if let Some(adaptive) = &self.adaptive {
                errors.push(syn::Error::new(
                    adaptive.key,
                    "`adaptive` cannot be used with `gate`: a shared `Gate` has a fixed size; \
                     write `limit = N` for an adaptive limit of at most N of the function's own, \
                     or share a `static LazyLock<Limiter>` built with `.adaptive(..)` through \
                     `limiter = NAME`",
                ));
            }
            if let Some(rate) = &self.rate {
                errors.push(syn::Error::new(
                    rate.key,
                    "`rate` cannot be used with `gate`: a `Gate` limits concurrency only; \
                     share a `static LazyLock<Limiter>` built with `.concurrency(n).rate(..)` \
                     through `limiter = NAME`",
                ));
            }
            if let Some(tokens) = &self.tokens {
                errors.push(syn::Error::new(
                    tokens.key,
                    "`tokens` cannot be used with `gate`: a `Gate` limits concurrency only; \
                     share a `static LazyLock<Limiter>` built with `.tokens(..)` through \
                     `limiter = NAME`",
                ));
            } else if let Some(cost) = &self.cost {
                errors.push(syn::Error::new(
                    cost.key,
                    "`cost` is charged to a token budget, and a `Gate` has none: add \
                     `tokens = \"180000/min\"` with `limit = N` in place of `gate`, or share \
                     a `static LazyLock<Limiter>` built with `.tokens(..)` through \
                     `limiter = NAME`",
                ));
            }
            errors.finish()?;
            return Ok(Source::Shared { path: gate.clone() });
        }
        if self.rate.is_some() || self.adaptive.is_some() || self.tokens.is_some() {
            return Ok(Source::OwnLimiter {
                limit: self.limit.clone(),
                rate: self.rate.clone().map(|text| RateSpec {
                    text,
                    burst: self.burst.clone(),
                }),
                tokens: self.tokens.clone(),
                adaptive: self.adaptive.clone(),
            });
        }
        match &self.limit {
            Some(limit) => Ok(Source::OwnGate {
                limit: limit.clone(),
            }),
            None => Err(syn::Error::new(
                Span::call_site(),
                "`#[gated]` needs a limit: `limit = N`, `rate = \"500/min\"`, \
                 `tokens = \"180000/min\"` or `adaptive = \"aimd\"` for limits of its own, or `gate = NAME` or \
                 `limiter = NAME` to share limits you declared",
            )),
        }
    }

    /// Options that need another: `backpressure` something to act on, `burst` a rate,
    /// `tokens` and `cost` each other (or `cost` a shared limiter), `usage` a cost,
    /// `timeout_error` a timeout, the retry options `retry`.
    fn check_options(&self) -> syn::Result<()> {
        let mut errors = Errors::default();
        let reports = self.limiter.is_some()
            || self.rate.is_some()
            || self.adaptive.is_some()
            || self.tokens.is_some();
        if let Some(backpressure) = &self.backpressure
            && backpressure.value
            && self.retry.is_none()
            && !reports
        {
            errors.push(syn::Error::new(
                backpressure.key,
                "`backpressure` has nothing to act on here: it makes retries wait out the \
                 server's `Retry-After` (add `retry = N`) and reports overloads to a limiter \
                 (`rate`, `adaptive` or `limiter = NAME`); a `Gate` ignores them",
            ));
        }
        if let (Some(burst), None) = (&self.burst, &self.rate) {
            errors.push(syn::Error::new(
                burst.key,
                "`burst` sets how many calls a rate limit lets through back to back, so it \
                 needs `rate = \"...\"`",
            ));
        }
        if let (Some(tokens), None) = (&self.tokens, &self.cost) {
            errors.push(syn::Error::new(
                tokens.key,
                "`tokens` sets a token budget, so each call needs its cost: add \
                 `cost = EXPR`, a `u64` estimate computed from the arguments, such as \
                 `cost = estimate(&prompt)`",
            ));
        }
        // With `gate`, `cost` is reported by `source`; a `limiter` may have a token budget.
        if let Some(cost) = &self.cost
            && self.tokens.is_none()
            && self.limiter.is_none()
            && self.gate.is_none()
        {
            errors.push(syn::Error::new(
                cost.key,
                "`cost` is charged to a token budget: add `tokens = \"180000/min\"`, or \
                 share a `static LazyLock<Limiter>` built with `.tokens(..)` through \
                 `limiter = NAME`",
            ));
        }
        if let (Some(usage), None) = (&self.usage, &self.cost) {
            errors.push(syn::Error::new(
                usage.key,
                "`usage` reads what a call used, to settle its `cost`, so it needs \
                 `tokens = \"...\"` and `cost = EXPR`",
            ));
        }
        if let (Some(timeout_error), None) = (&self.timeout_error, &self.timeout) {
            errors.push(syn::Error::new(
                timeout_error.key,
                "`timeout_error` makes the error of an attempt that timed out, so it needs \
                 `timeout = \"...\"`",
            ));
        }
        if self.retry.is_none() {
            let options = [
                ("backoff", self.backoff.as_ref().map(|a| a.key)),
                ("wait", self.wait.as_ref().map(|a| a.key)),
                ("max_delay", self.max_delay.as_ref().map(|a| a.key)),
                ("jitter", self.jitter.as_ref().map(|a| a.key)),
                ("retry_if", self.retry_if.as_ref().map(|a| a.key)),
            ];
            for (name, key) in options {
                if let Some(key) = key {
                    errors.push(syn::Error::new(
                        key,
                        format!("`{name}` configures retries, so it needs `retry = N`"),
                    ));
                }
            }
        }
        errors.finish()
    }

    /// The delay between attempts: `backoff`, `wait` and `max_delay` together.
    fn delay(&self) -> syn::Result<Delay> {
        let exponential = self
            .backoff
            .as_ref()
            .filter(|b| b.value == BackoffKind::Exponential);
        let Some(backoff) = exponential else {
            if let Some(max) = &self.max_delay {
                return Err(syn::Error::new(
                    max.key,
                    "`max_delay` caps an exponential backoff; add `backoff = \"exponential\"`",
                ));
            }
            return Ok(self.wait.clone().map_or(Delay::Immediate, Delay::Fixed));
        };
        match &self.wait {
            None => Err(syn::Error::new(
                backoff.span,
                "an exponential backoff needs its first delay: add `wait = \"...\"`, \
                 such as `wait = \"500ms\"`",
            )),
            Some(wait) if wait.value.is_zero() => Err(syn::Error::new(
                wait.span,
                "`wait` must be greater than zero for an exponential backoff",
            )),
            Some(wait) => match self.max_delay.as_ref().filter(|m| m.value < wait.value) {
                Some(max) => Err(syn::Error::new(
                    max.span,
                    format!(
                        "`max_delay` ({}) must not be shorter than `wait` ({})",
                        max.value, wait.value
                    ),
                )),
                None => Ok(Delay::Exponential {
                    wait: wait.clone(),
                    max: self.max_delay.clone(),
                }),
            },
        }
    }

    /// The argument that makes the function need a `Result` (and so a retry policy), for
    /// error messages and for the span of the retry loop.
    ///
    /// An adaptive limit learns from how each attempt ends, `backpressure` reads the error,
    /// and `cost` is settled from the `Ok` value, so they need a `Result` too.
    fn policy_key(&self) -> Option<(&'static str, Span)> {
        let keys = [
            ("retry", self.retry.as_ref().map(|a| a.key)),
            ("timeout", self.timeout.as_ref().map(|a| a.key)),
            ("adaptive", self.adaptive.as_ref().map(|a| a.key)),
            (
                "backpressure",
                self.backpressure
                    .as_ref()
                    .filter(|a| a.value)
                    .map(|a| a.key),
            ),
            ("cost", self.cost.as_ref().map(|a| a.key)),
        ];
        keys.into_iter()
            .find_map(|(name, key)| key.map(|key| (name, key)))
    }
}

/// Both values, or the errors of both.
fn join<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(mut e), Err(more)) => {
            e.combine(more);
            Err(e)
        }
    }
}

/// The key being parsed; owns the one duplicate check every argument goes through.
struct Key<'a> {
    name: &'a str,
    span: Span,
}

impl Key<'_> {
    /// Stores `parse(value)` in `slot`, refusing a key given twice.
    fn set<T>(
        &self,
        slot: &mut Option<Arg<T>>,
        value: &Expr,
        parse: impl FnOnce(&Expr) -> syn::Result<T>,
    ) -> syn::Result<()> {
        if slot.is_some() {
            return Err(syn::Error::new(
                self.span,
                format!("duplicate argument `{}`", self.name),
            ));
        }
        *slot = Some(Arg {
            value: parse(value)?,
            key: self.span,
            span: value.span(),
        });
        Ok(())
    }
}

/// Errors gathered before giving up, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Unwraps the invisible group around a value passed through a `macro_rules!` fragment
/// (`#[gated(limit = $n)]`).
fn ungroup(value: Expr) -> Expr {
    match value {
        Expr::Group(group) => ungroup(*group.expr),
        value => value,
    }
}

fn path_name(path: &Path) -> String {
    let segments: Vec<_> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

fn unknown_argument(name: &str, span: Span) -> syn::Error {
    let expected: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
    let expected = expected.join(", ");
    let message = if name == "max_wait" {
        "unknown argument `max_wait`: the cap on the delay between attempts is `max_delay`; \
         the time a caller may wait for a permit is set on a shared gate \
         (`Gate::builder(n).max_wait(..)`, then `gate = NAME`)"
            .to_owned()
    } else if let Some(close) = did_you_mean(name, KEYS) {
        format!("unknown argument `{name}`; did you mean `{close}`? expected one of {expected}")
    } else {
        format!("unknown argument `{name}`; expected one of {expected}")
    };
    syn::Error::new(span, message)
}

/// The candidate closest to `name`, if it is a likely misspelling or a common synonym.
fn did_you_mean(name: &str, candidates: &[&'static str]) -> Option<&'static str> {
    const SYNONYMS: &[(&str, &str)] = &[
        ("retries", "retry"),
        ("max_retries", "retry"),
        ("attempts", "retry"),
        ("permits", "limit"),
        ("concurrency", "limit"),
        ("max_concurrency", "limit"),
        ("delay", "wait"),
        ("interval", "wait"),
    ];
    if let Some((_, to)) = SYNONYMS.iter().find(|(from, _)| *from == name) {
        return candidates.iter().copied().find(|c| c == to);
    }
    let allowed = if name.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting an adjacent swap as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A whole number of at least 1, written as an integer literal.
fn positive_int<N: std::str::FromStr>(value: &Expr, key: &str, example: &str) -> syn::Result<N>
where
    N::Err: std::fmt::Display,
{
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => {
            let zero = lit.base10_digits().bytes().all(|b| b == b'0');
            if zero {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("`{key}` must be at least 1"),
                ));
            }
            lit.base10_parse::<N>().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    format!("`{key} = {}` is too large", lit.base10_digits()),
                )
            })
        }
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1"),
        )),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be an integer literal, such as `{example}`"),
        )),
    }
}

fn parse_limit(value: &Expr) -> syn::Result<u64> {
    positive_int(value, "limit", "limit = 10").map_err(|e| {
        if matches!(value, Expr::Path(_)) {
            syn::Error::new_spanned(
                value,
                "`limit` must be an integer literal, such as `limit = 10`; to size a gate \
                 elsewhere, declare a `static` gate and write `gate = NAME`",
            )
        } else {
            e
        }
    })
}

fn parse_retry(value: &Expr) -> syn::Result<u32> {
    positive_int(value, "retry", "retry = 3")
}

fn parse_gate(value: &Expr) -> syn::Result<Path> {
    match value {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`gate` must be the path of a `static` gate, such as `gate = OPENAI`",
        )),
    }
}

fn parse_limiter(value: &Expr) -> syn::Result<Path> {
    match value {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`limiter` must be the path of a `static` limiter, such as `limiter = GITHUB`",
        )),
    }
}

/// The rate's text is checked by `Rate::parse` itself, in a `const` spanned at the literal
/// (see `expand`), so the macro and the runtime share one grammar.
fn parse_rate(value: &Expr) -> syn::Result<syn::LitStr> {
    string_literal(value, "rate", "rate = \"500/min\"").cloned()
}

/// Like `rate`, checked by `Rate::parse` in a `const` at the literal.
fn parse_tokens(value: &Expr) -> syn::Result<syn::LitStr> {
    string_literal(value, "tokens", "tokens = \"180000/min\"").cloned()
}

/// Any expression, typed `u64` by the expansion; only a literal that can never be admitted
/// is refused here.
fn parse_cost(value: &Expr) -> syn::Result<Expr> {
    let zero = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_digits().bytes().all(|b| b == b'0'),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => matches!(**expr, Expr::Lit(_)),
        _ => false,
    };
    if zero {
        return Err(syn::Error::new_spanned(
            value,
            "`cost` must be at least 1: a token budget refuses a call that costs nothing",
        ));
    }
    Ok(value.clone())
}

fn parse_usage(value: &Expr) -> syn::Result<Expr> {
    match value {
        Expr::Path(_) | Expr::Closure(_) => Ok(value.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`usage` must be the path of a `fn(&T) -> Option<u64>` (`T` the `Ok` type), \
             or a closure that captures nothing, such as \
             `usage = |response| response.usage.map(|u| u.total_tokens)`",
        )),
    }
}

fn parse_timeout_error(value: &Expr) -> syn::Result<Expr> {
    match value {
        Expr::Path(_) | Expr::Closure(_) => Ok(value.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`timeout_error` must be the path of a `fn(gate_core::Elapsed) -> E` (`E` the \
             error type), or a closure that captures nothing, such as \
             `timeout_error = |_| ApiError::Timeout`",
        )),
    }
}

fn parse_burst(value: &Expr) -> syn::Result<u32> {
    positive_int(value, "burst", "burst = 10")
}

fn parse_adaptive(value: &Expr) -> syn::Result<AdaptiveKind> {
    let lit = string_literal(value, "adaptive", "adaptive = \"aimd\"")?;
    match lit.value().as_str() {
        "aimd" => Ok(AdaptiveKind::Aimd),
        "gradient" => Ok(AdaptiveKind::Gradient),
        other => {
            let hint = match did_you_mean(other, &["aimd", "gradient"]) {
                Some(close) => format!("did you mean \"{close}\"? "),
                None => String::new(),
            };
            Err(syn::Error::new(
                lit.span(),
                format!(
                    "unknown adaptive algorithm \"{other}\"; {hint}expected \"aimd\" (for \
                     servers that refuse when overloaded) or \"gradient\" (for servers that \
                     slow down)"
                ),
            ))
        }
    }
}

fn string_literal<'a>(value: &'a Expr, key: &str, example: &str) -> syn::Result<&'a syn::LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a string, such as `{example}`"),
        )),
    }
}

fn parse_backoff(value: &Expr) -> syn::Result<BackoffKind> {
    let lit = string_literal(value, "backoff", "backoff = \"exponential\"")?;
    match lit.value().as_str() {
        "fixed" => Ok(BackoffKind::Fixed),
        "exponential" => Ok(BackoffKind::Exponential),
        other => {
            let hint = match did_you_mean(other, &["fixed", "exponential"]) {
                Some(close) => format!("did you mean \"{close}\"? "),
                None => String::new(),
            };
            Err(syn::Error::new(
                lit.span(),
                format!("unknown backoff \"{other}\"; {hint}expected \"fixed\" or \"exponential\""),
            ))
        }
    }
}

fn parse_duration(value: &Expr, key: &str) -> syn::Result<Millis> {
    let example = format!("{key} = \"500ms\"");
    let lit = string_literal(value, key, &example)?;
    duration::parse(&lit.value()).map_err(|message| syn::Error::new(lit.span(), message))
}

fn parse_timeout(value: &Expr) -> syn::Result<Millis> {
    let timeout = parse_duration(value, "timeout")?;
    if timeout.is_zero() {
        return Err(syn::Error::new_spanned(
            value,
            "`timeout` must be greater than zero: no attempt could finish in no time",
        ));
    }
    Ok(timeout)
}

fn parse_bool(value: &Expr, key: &str) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be `true` or `false`"),
        )),
    }
}

fn parse_retry_if(value: &Expr) -> syn::Result<Expr> {
    match value {
        Expr::Path(_) | Expr::Closure(_) => Ok(value.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`retry_if` must be the path of a `fn(&E) -> bool`, such as \
             `retry_if = is_transient`",
        )),
    }
}

fn parse_crate(value: &Expr) -> syn::Result<Path> {
    let lit = string_literal(value, "crate", "crate = \"gate_core\"")?;
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`crate` must name the gate-core crate as a path, such as \
                 `crate = \"gate_core\"`; \"{}\" is not a path",
                lit.value()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: TokenStream) -> syn::Result<Args> {
        Args::parse(tokens)
    }

    fn plan(tokens: TokenStream) -> syn::Result<Plan> {
        Args::parse(tokens)?.plan()
    }

    fn error(tokens: TokenStream) -> String {
        let Err(errors) = plan(tokens) else {
            panic!("should not parse");
        };
        let errors: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
        errors.join("\n")
    }

    #[test]
    fn every_argument_is_parsed_with_its_value() {
        let args = parse(quote!(
            gate = crate::OPENAI,
            retry = 3,
            backoff = "exponential",
            wait = "500ms",
            max_delay = "10s",
            jitter = true,
            timeout = "30s",
            retry_if = is_transient,
            crate = "gate1"
        ))
        .unwrap();
        assert!(args.limit.is_none());
        assert_eq!(path_name(&args.gate.unwrap().value), "crate::OPENAI");
        assert_eq!(args.retry.unwrap().value, 3);
        assert_eq!(args.backoff.unwrap().value, BackoffKind::Exponential);
        assert_eq!(args.wait.unwrap().value, Millis(500));
        assert_eq!(args.max_delay.unwrap().value, Millis(10_000));
        assert!(args.jitter.unwrap().value);
        assert_eq!(args.timeout.unwrap().value, Millis(30_000));
        assert!(matches!(args.retry_if.unwrap().value, Expr::Path(_)));
        assert_eq!(path_name(&args.krate.unwrap().value), "gate1");
    }

    #[test]
    fn limit_alone_needs_no_policy() {
        let plan = plan(quote!(limit = 10)).unwrap();
        assert!(matches!(&plan.admission, Source::OwnGate { limit } if limit.value == 10));
        assert!(plan.policy.is_none());
        assert!(
            self::plan(quote!(limit = 1, timeout = "1s"))
                .unwrap()
                .policy
                .is_some()
        );
        assert!(
            self::plan(quote!(limit = 1, retry = 1))
                .unwrap()
                .policy
                .is_some()
        );
    }

    #[test]
    fn unknown_arguments_list_the_valid_ones_and_suggest_close_ones() {
        let e = error(quote!(limt = 10));
        assert!(
            e.starts_with("unknown argument `limt`; did you mean `limit`?"),
            "{e}"
        );
        assert!(
            e.contains("expected one of `limit`, `gate`, `limiter`, `rate`"),
            "{e}"
        );
        let e = error(quote!(limit = 1, retyr = 2));
        assert!(e.contains("did you mean `retry`?"), "{e}");
        let e = error(quote!(limit = 1, retries = 2));
        assert!(e.contains("did you mean `retry`?"), "{e}");
        let e = error(quote!(limit = 1, flavour = 2));
        assert!(!e.contains("did you mean"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
        let e = error(quote!(limit = 1, max_wait = "1s"));
        assert!(e.contains("is `max_delay`"), "{e}");
    }

    #[test]
    fn a_duplicate_is_reported_on_its_second_occurrence_for_every_key() {
        let valid = |key: &str| match key {
            "limit" | "retry" => "1",
            "gate" | "retry_if" | "usage" | "timeout_error" => "f",
            "tokens" => "\"1000/min\"",
            "cost" => "n",
            "backoff" => "\"fixed\"",
            "wait" | "max_delay" | "timeout" => "\"1s\"",
            "jitter" | "backpressure" => "true",
            "crate" => "\"gate_core\"",
            "limiter" => "L",
            "rate" => "\"10/s\"",
            "burst" => "2",
            "adaptive" => "\"aimd\"",
            _ => panic!("no valid value for `{key}`"),
        };
        for key in KEYS {
            let value = valid(key);
            let tokens: TokenStream = format!("{key} = {value}, {key} = {value}").parse().unwrap();
            let e = error(tokens);
            assert!(e.contains(&format!("duplicate argument `{key}`")), "{e}");
        }
    }

    #[test]
    fn limit_and_retry_must_be_positive_integers() {
        assert_eq!(error(quote!(limit = 0)), "`limit` must be at least 1");
        assert_eq!(error(quote!(limit = -3)), "`limit` must be at least 1");
        assert!(error(quote!(limit = "10")).contains("must be an integer literal"));
        assert!(error(quote!(limit = 2.5)).contains("must be an integer literal"));
        assert!(error(quote!(limit = N)).contains("`gate = NAME`"));
        assert!(error(quote!(limit = 1, retry = 0)).contains("`retry` must be at least 1"));
        assert!(error(quote!(limit = 1, retry = 99999999999)).contains("too large"));
    }

    #[test]
    fn exactly_one_of_limit_and_gate() {
        assert!(error(quote!()).contains("needs a limit"));
        assert!(error(quote!(retry = 2)).contains("needs a limit"));
        assert!(error(quote!(limit = 2, gate = G)).contains("cannot be used together"));
        assert!(error(quote!(gate = "G")).contains("must be the path of a `static` gate"));
    }

    #[test]
    fn retry_options_need_retry() {
        let e = error(quote!(limit = 2, wait = "1s", jitter = true));
        assert!(
            e.contains("`wait` configures retries, so it needs `retry = N`"),
            "{e}"
        );
        assert!(e.contains("`jitter` configures retries"), "{e}");
        // A per-attempt timeout makes sense without retries.
        assert!(plan(quote!(limit = 2, timeout = "1s")).is_ok());
    }

    #[test]
    fn backoff_settings_are_checked_together() {
        let e = error(quote!(limit = 1, retry = 1, backoff = "exponential"));
        assert!(e.contains("needs its first delay"), "{e}");
        let e = error(quote!(limit = 1, retry = 1, max_delay = "1s"));
        assert!(e.contains("caps an exponential backoff"), "{e}");
        let e = error(quote!(
            limit = 1,
            retry = 1,
            backoff = "exponential",
            wait = "2s",
            max_delay = "1s"
        ));
        assert!(
            e.contains("`max_delay` (1s) must not be shorter than `wait` (2s)"),
            "{e}"
        );
        let e = error(quote!(limit = 1, retry = 1, backoff = "exponental"));
        assert!(e.contains("did you mean \"exponential\"?"), "{e}");
        let e = error(quote!(limit = 1, retry = 1, backoff = exponential));
        assert!(e.contains("takes a string"), "{e}");
    }

    #[test]
    fn durations_are_checked_on_their_literal() {
        let e = error(quote!(limit = 1, retry = 1, wait = "2 sec"));
        assert!(e.contains("unknown unit `sec`"), "{e}");
        let e = error(quote!(limit = 1, timeout = "0s"));
        assert!(e.contains("`timeout` must be greater than zero"), "{e}");
        let e = error(quote!(limit = 1, retry = 1, wait = 500));
        assert!(e.contains("`wait` takes a string"), "{e}");
    }

    #[test]
    fn independent_problems_are_reported_together() {
        let e = error(quote!(limt = 1, retry = 0, jitter = 1));
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    #[test]
    fn a_rate_or_an_adaptive_limit_is_a_limit_of_its_own() {
        let args = plan(quote!(rate = "500/min", burst = 10)).unwrap();
        let Source::OwnLimiter {
            rate: Some(rate), ..
        } = &args.admission
        else {
            panic!("a rate is a limiter of the function's own");
        };
        assert_eq!(rate.text.value.value(), "500/min");
        assert_eq!(rate.burst.as_ref().unwrap().value, 10);
        assert!(args.policy.is_none(), "a rate alone needs no `Result`");
        let args = plan(quote!(adaptive = "gradient", limit = 50)).unwrap();
        let Source::OwnLimiter {
            adaptive: Some(adaptive),
            limit: Some(limit),
            ..
        } = &args.admission
        else {
            panic!("an adaptive limit is a limiter of the function's own");
        };
        assert_eq!(adaptive.value, AdaptiveKind::Gradient);
        assert_eq!(limit.value, 50);
        assert_eq!(args.policy.map(|p| p.key.0), Some("adaptive"));
        let args = plan(quote!(limit = 5)).unwrap();
        assert!(
            matches!(args.admission, Source::OwnGate { .. }),
            "`limit` alone keeps its static `Gate`"
        );
        let args = plan(quote!(limiter = api::GITHUB, backpressure = true)).unwrap();
        assert!(matches!(args.admission, Source::Shared { .. }));
        assert_eq!(args.policy.map(|p| p.key.0), Some("backpressure"));
    }

    #[test]
    fn a_rate_is_a_string_and_a_burst_needs_one() {
        // The rate's grammar is `Rate::parse`'s, checked in a `const` (see the UI tests).
        assert!(error(quote!(rate = 500)).contains("`rate` takes a string"));
        assert!(error(quote!(limit = 1, burst = 2)).contains("needs `rate = \"...\"`"));
        assert!(error(quote!(rate = "1/s", burst = 0)).contains("`burst` must be at least 1"));
    }

    #[test]
    fn adaptive_is_aimd_or_gradient_and_owns_its_limit() {
        let e = error(quote!(adaptive = "aimdd"));
        assert!(e.contains("did you mean \"aimd\"?"), "{e}");
        let e = error(quote!(adaptive = "vegas"));
        assert!(
            e.starts_with("unknown adaptive algorithm \"vegas\"; expected"),
            "{e}"
        );
        let e = error(quote!(gate = G, adaptive = "aimd"));
        assert!(e.contains("`adaptive` cannot be used with `gate`"), "{e}");
        let e = error(quote!(gate = G, rate = "1/s"));
        assert!(e.contains("`rate` cannot be used with `gate`"), "{e}");
    }

    #[test]
    fn a_shared_limiter_excludes_every_other_limit_each_on_its_key() {
        let e = error(quote!(
            limiter = L,
            limit = 1,
            gate = G,
            rate = "1/s",
            burst = 2,
            adaptive = "aimd"
        ));
        for key in ["limit", "gate", "rate", "burst", "adaptive"] {
            assert!(
                e.contains(&format!("`{key}` cannot be used with `limiter`")),
                "{key}: {e}"
            );
        }
        assert_eq!(e.lines().count(), 5, "{e}");
        assert!(error(quote!(limiter = "L")).contains("must be the path of a `static` limiter"));
    }

    #[test]
    fn backpressure_needs_something_to_act_on() {
        let e = error(quote!(limit = 1, backpressure = true));
        assert!(e.contains("`backpressure` has nothing to act on"), "{e}");
        assert!(plan(quote!(limit = 1, retry = 1, backpressure = true)).is_ok());
        assert!(plan(quote!(rate = "1/s", backpressure = true)).is_ok());
        assert!(error(quote!(limit = 1, backpressure = 1)).contains("`true` or `false`"));
        let off = plan(quote!(rate = "1/s", backpressure = false)).unwrap();
        assert!(
            off.policy.is_none(),
            "`backpressure = false` reads no error"
        );
    }

    #[test]
    fn tokens_and_a_cost_give_the_function_a_budget_settled_from_each_success() {
        let plan = plan(quote!(
            limit = 8,
            rate = "500/min",
            tokens = "180000/min",
            cost = estimate(&prompt)
        ))
        .unwrap();
        let Source::OwnLimiter {
            tokens: Some(tokens),
            limit: Some(limit),
            rate: Some(_),
            ..
        } = &plan.admission
        else {
            panic!("a token budget is a limiter of the function's own");
        };
        assert_eq!(tokens.value.value(), "180000/min");
        assert_eq!(limit.value, 8);
        let policy = plan.policy.expect("a cost is settled from a `Result`");
        assert_eq!(policy.key.0, "cost");
        let cost = policy.cost.unwrap();
        assert!(matches!(cost.expr.value, Expr::Call(_)));
        assert!(cost.usage.is_none());
        assert!(
            self::plan(quote!(tokens = "1000/min", cost = 1))
                .map(|p| matches!(p.admission, Source::OwnLimiter { .. }))
                .unwrap(),
            "`tokens` alone is a limit"
        );
        let shared = self::plan(quote!(limiter = L, cost = n, usage = |r| r.used)).unwrap();
        assert!(matches!(shared.admission, Source::Shared { .. }));
        assert!(shared.policy.unwrap().cost.unwrap().usage.is_some());
    }

    #[test]
    fn tokens_and_cost_need_each_other_each_on_its_key() {
        let e = error(quote!(limit = 1, tokens = "1000/min"));
        assert!(
            e.contains("`tokens` sets a token budget, so each call needs its cost"),
            "{e}"
        );
        let e = error(quote!(limit = 1, cost = n));
        assert!(
            e.starts_with("`cost` is charged to a token budget: add `tokens"),
            "{e}"
        );
        let e = error(quote!(gate = G, cost = n));
        assert!(e.contains("and a `Gate` has none"), "{e}");
        assert_eq!(e.lines().count(), 1, "reported once: {e}");
        let e = error(quote!(gate = G, tokens = "1/s", cost = n));
        assert!(e.contains("`tokens` cannot be used with `gate`"), "{e}");
        let e = error(quote!(limiter = L, tokens = "1/s", cost = n));
        assert!(e.contains("`tokens` cannot be used with `limiter`"), "{e}");
        let e = error(quote!(limit = 1, usage = f));
        assert!(e.contains("`usage` reads what a call used"), "{e}");
        assert_eq!(
            error(quote!(tokens = "1/s", cost = 0)),
            "`cost` must be at least 1: a token budget refuses a call that costs nothing"
        );
        assert!(error(quote!(tokens = "1/s", cost = -2)).contains("at least 1"));
        assert!(error(quote!(tokens = 1000, cost = 1)).contains("`tokens` takes a string"));
        assert!(error(quote!(tokens = "1/s", cost = 1, usage = 3)).contains("`usage` must be"));
    }

    #[test]
    fn a_timeout_error_needs_a_timeout_and_names_a_function() {
        let plan = plan(quote!(
            limit = 1,
            timeout = "1s",
            timeout_error = |_| E::Timeout
        ))
        .unwrap();
        assert!(matches!(
            plan.policy.unwrap().timeout_error.unwrap().value,
            Expr::Closure(_)
        ));
        let e = error(quote!(limit = 1, retry = 1, timeout_error = timed_out));
        assert!(
            e.contains(
                "`timeout_error` makes the error of an attempt that timed out, so it needs `timeout"
            ),
            "{e}"
        );
        let e = error(quote!(limit = 1, timeout = "1s", timeout_error = "timeout"));
        assert!(
            e.contains("`timeout_error` must be the path of a `fn(gate_core::Elapsed) -> E`"),
            "{e}"
        );
        let e = error(quote!(limit = 1, timeout = "1s", timeout_eror = f));
        assert!(e.contains("did you mean `timeout_error`?"), "{e}");
    }

    #[test]
    fn a_key_without_a_value_says_how_to_write_it() {
        let e = error(quote!(limit));
        assert!(e.contains("expected `=` after `limit`"), "{e}");
    }

    #[test]
    fn edit_distance_counts_swaps_once() {
        assert_eq!(edit_distance("retry", "retyr"), 1);
        assert_eq!(edit_distance("limit", "limt"), 1);
        assert_eq!(edit_distance("gate", "gate"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
