//! Code generation for `#[gated]`: check the signature, plan, then replace only the body.
//!
//! Only the attributes, visibility and signature are parsed; the body stays the tokens it
//! was, so that a syntax error in it is rustc's one error, not a second one from `#[gated]`.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Item, ReturnType, Signature, Type, Visibility};

use crate::args::{AdaptiveKind, Arg, Args};
use crate::duration::Millis;
use crate::plan::{Delay, Plan, Policy, RateSpec, Source, TokenCost};

/// Expands `#[gated(args)] item`. On any error, the item is emitted unchanged next to the
/// errors, so that the rest of the program (and rust-analyzer) still sees the function.
pub(crate) fn gated(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<Function>(item.clone()) {
        Ok(function) => function,
        Err(e) => return with_error(item.clone(), not_a_function(item).unwrap_or(e)),
    };
    let plan = Args::parse(args).and_then(Args::plan);
    let checked = check_signature(&function.sig, plan.as_ref().ok());
    match (plan, checked) {
        (Ok(plan), Ok(())) => expand(&plan, function),
        (Ok(_), Err(e)) | (Err(e), Ok(())) => with_error(item, e),
        (Err(mut e), Err(more)) => {
            e.combine(more);
            with_error(item, e)
        }
    }
}

/// A function as `#[gated]` sees it: its attributes, visibility and signature parsed, its
/// body kept as the tokens it was.
struct Function {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    /// The body's braces and everything in them, unparsed.
    body: Group,
}

impl Parse for Function {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let mut body: TokenTree = input.parse()?;
        // A body passed through a `macro_rules!` fragment (`$body:block`) comes in an
        // invisible group.
        let body = loop {
            match body {
                TokenTree::Group(group) if group.delimiter() == Delimiter::None => {
                    body = syn::parse2(group.stream())?;
                }
                TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => break group,
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "expected the function's body",
                    ));
                }
            }
        };
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function's body"));
        }
        Ok(Self {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl Function {
    /// The function with `body` (statements, without braces) in place of its own, in braces
    /// spanned as its own were.
    fn with_body(self, body: TokenStream) -> TokenStream {
        let Self {
            attrs,
            vis,
            sig,
            body: original,
        } = self;
        let mut block = Group::new(Delimiter::Brace, body);
        block.set_span(original.span());
        quote!(#(#attrs)* #vis #sig #block)
    }

    /// The body's inner attributes (`#![allow(..)]`), which must stay first in the function's
    /// block, and its statements, as tokens.
    fn split_body(&self) -> (TokenStream, TokenStream) {
        let mut tokens = self.body.stream().into_iter().peekable();
        let mut inner = TokenStream::new();
        loop {
            let mut ahead = tokens.clone();
            match (ahead.next(), ahead.next(), ahead.next()) {
                (
                    Some(TokenTree::Punct(pound)),
                    Some(TokenTree::Punct(bang)),
                    Some(TokenTree::Group(group)),
                ) if pound.as_char() == '#'
                    && bang.as_char() == '!'
                    && group.delimiter() == Delimiter::Bracket =>
                {
                    inner.extend(tokens.by_ref().take(3));
                }
                _ => break,
            }
        }
        (inner, tokens.collect())
    }
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

/// Says what the item is, when it is not a function with a body.
fn not_a_function(item: TokenStream) -> Option<syn::Error> {
    if let Ok(declaration) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        return Some(syn::Error::new(
            declaration.sig.fn_token.span,
            "`#[gated]` needs the function's body: put it on the implementation, \
             not on the declaration",
        ));
    }
    let item = syn::parse2::<Item>(item).ok()?;
    let (span, what) = match &item {
        Item::Struct(i) => (i.struct_token.span, "a struct"),
        Item::Enum(i) => (i.enum_token.span, "an enum"),
        Item::Union(i) => (i.union_token.span, "a union"),
        Item::Trait(i) => (i.trait_token.span, "a trait"),
        Item::Impl(i) => (i.impl_token.span, "an impl block"),
        Item::Mod(i) => (i.mod_token.span, "a module"),
        Item::Const(i) => (i.const_token.span, "a constant"),
        Item::Static(i) => (i.static_token.span, "a static"),
        Item::Type(i) => (i.type_token.span, "a type alias"),
        Item::Use(i) => (i.use_token.span, "a `use` declaration"),
        Item::ExternCrate(i) => (i.extern_token.span, "an `extern crate`"),
        Item::ForeignMod(i) => (i.abi.extern_token.span, "an `extern` block"),
        other => (other.span(), "this item"),
    };
    Some(syn::Error::new(
        span,
        format!("`#[gated]` applies to an `async fn`, not to {what}"),
    ))
}

/// Problems with the function itself, reported together with those of the arguments.
fn check_signature(sig: &Signature, plan: Option<&Plan>) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new(
            constness.span,
            "`#[gated]` requires an `async fn`; a `const fn` cannot wait for a permit",
        ));
    } else if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "`#[gated]` requires an `async fn`",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new(
            abi.extern_token.span,
            "`#[gated]` cannot be used on an `extern` function",
        ));
    }
    let policy_key = plan.and_then(|plan| plan.policy.as_ref()).map(|p| p.key);
    if let (Some((key, span)), ReturnType::Default) = (policy_key, &sig.output) {
        errors.push(syn::Error::new(
            span,
            format!(
                "`{key}` needs a function that returns a `Result`; `{}` returns `()`",
                sig.ident.unraw()
            ),
        ));
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}

/// Generated local names: `__gate_` and mixed-site hygiene, so the user's code neither sees
/// nor shadows them.
fn local(name: &str) -> syn::Ident {
    format_ident!("__gate_{}", name, span = Span::mixed_site())
}

fn expand(plan: &Plan, function: Function) -> TokenStream {
    let private = match &plan.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::gate_core::__private),
    };
    let name = function.sig.ident.unraw().to_string();
    let admission = local("admission");
    let permit = local("permit");
    let error = local("error");
    let admission_expr = match &plan.admission {
        Source::OwnGate { limit } => {
            let mut n = Literal::u64_unsuffixed(limit.value);
            n.set_span(limit.span);
            quote! {{
                static __GATE: #private::Gate = #private::named_gate(#n, ::core::concat!(::core::module_path!(), "::", #name));
                &__GATE
            }}
        }
        Source::OwnLimiter {
            limit,
            rate,
            tokens,
            adaptive,
        } => own_limiter(
            limit.as_ref(),
            rate.as_ref(),
            tokens.as_ref(),
            adaptive.as_ref(),
            &private,
            &name,
        ),
        Source::Shared { path } => {
            let value = &path.value;
            // `admission()` falls back to a trait method, one error on the path, when the
            // path does not name an admission.
            let shared = relocate(quote!(#private::Shared(&#value).admission()), path.span);
            quote! {{
                use #private::NotAnAdmission as _;
                #shared
            }}
        }
    };
    // Every source is admitted the same way; a function's own gate never refuses. With a
    // `cost`, each attempt reserves it (a source without a token budget ignores it), and
    // `next_settled` settles the permit before it reports it.
    let cost = plan.policy.as_ref().and_then(|policy| policy.cost.as_ref());
    let cost_ident = local("cost");
    let admit = match cost {
        None => quote! {
            let #permit = match #private::Admission::admit(#admission).await {
                ::core::result::Result::Ok(#permit) => #permit,
                ::core::result::Result::Err(#error) => #private::refused(#error, #name),
            };
        },
        Some(_) => quote! {
            let #permit = match #private::admit_tokens(#admission, #cost_ident).await {
                ::core::result::Result::Ok(#permit) => #permit,
                ::core::result::Result::Err(#error) => #private::refused(#error, #name),
            };
        },
    };
    // Evaluated once per call, before the first admission: every attempt reserves the same
    // estimate. Typed at the key, so a cost of another type is reported on the expression.
    let cost_stmt = cost.map(|TokenCost { expr, .. }| {
        let ty = quote_spanned!(expr.key=> u64);
        let value = &expr.value;
        quote!(let #cost_ident: #ty = #value;)
    });
    let (inner_attrs, stmts) = function.split_body();
    let body = match &plan.policy {
        // The permit is held until the body's value is returned, then dropped unreported:
        // without a policy nothing says whether the call succeeded.
        None => quote! {
            #admit
            { #stmts }
        },
        Some(policy) => expand_policy(policy, &function.sig, &private, &admit, &stmts),
    };
    function.with_body(quote! {
        #inner_attrs
        let #admission = #admission_expr;
        #cost_stmt
        #body
    })
}

/// The function's own limiter, built on the first call into a `static LazyLock` (so, like a
/// `limit`, shared by every call and every instantiation).
fn own_limiter(
    limit: Option<&Arg<u64>>,
    rate: Option<&RateSpec>,
    tokens: Option<&Arg<syn::LitStr>>,
    adaptive: Option<&Arg<AdaptiveKind>>,
    private: &TokenStream,
    name: &str,
) -> TokenStream {
    let limit = limit.map(|limit| {
        let mut n = Literal::usize_unsuffixed(usize::try_from(limit.value).unwrap_or(usize::MAX));
        n.set_span(limit.span);
        n
    });
    let mut settings = TokenStream::new();
    match (adaptive, &limit) {
        (Some(adaptive), _) => {
            let algorithm = match adaptive.value {
                AdaptiveKind::Aimd => quote_spanned!(adaptive.span=> #private::aimd),
                AdaptiveKind::Gradient => quote_spanned!(adaptive.span=> #private::gradient),
            };
            let max = match &limit {
                Some(n) => quote!(::core::option::Option::Some(#n)),
                None => quote!(::core::option::Option::None),
            };
            settings.extend(quote!(.adaptive(#algorithm(#max))));
        }
        (None, Some(n)) => settings.extend(quote!(.concurrency(#n))),
        (None, None) => {}
    }
    let mut rate_const = TokenStream::new();
    if let Some(rate) = rate {
        let text = &rate.text.value;
        let mut burst = Literal::u32_unsuffixed(rate.burst.as_ref().map_or(1, |b| b.value));
        if let Some(b) = &rate.burst {
            burst.set_span(b.span);
        }
        // Evaluated when the program is compiled, by the same `Rate::parse` as at run time;
        // located at the literal, so a malformed rate is a compile error there.
        let value = relocate(quote!(#private::rate(#text, #burst)), rate.text.span);
        rate_const = quote! {
            const __GATE_RATE: #private::Rate = #value;
        };
        let konst = relocate(quote!(__GATE_RATE), rate.text.span);
        settings.extend(quote!(.rate(#konst)));
    }
    if let Some(tokens) = tokens {
        let text = &tokens.value;
        // Checked like the rate, by `Rate::parse`, on the literal.
        let value = relocate(quote!(#private::tokens(#text)), tokens.span);
        rate_const.extend(quote! {
            const __GATE_TOKENS: #private::Rate = #value;
        });
        let konst = relocate(quote!(__GATE_TOKENS), tokens.span);
        settings.extend(quote!(.tokens(#konst)));
    }
    quote! {{
        #rate_const
        static __GATE_LIMITER: #private::LazyLock<#private::Limiter> =
            #private::LazyLock::new(|| {
                #private::limiter(#private::Limiter::builder() #settings, #name)
            });
        &__GATE_LIMITER
    }}
}

/// The body under a retry policy: an explicit loop, so that each attempt is a fresh `async`
/// block borrowing the arguments (and `&mut self`) only while it runs. Each attempt's permit
/// is handed to `next`, which reports the attempt through it (and so releases it) before
/// any backoff.
fn expand_policy(
    policy: &Policy,
    sig: &Signature,
    private: &TokenStream,
    admit: &TokenStream,
    stmts: &TokenStream,
) -> TokenStream {
    let (return_type, return_span) = match &sig.output {
        ReturnType::Type(_, ty) => {
            let span = ty.span();
            let mut ty = (**ty).clone();
            ImplTraitToInfer.visit_type_mut(&mut ty);
            (ty.into_token_stream(), span)
        }
        ReturnType::Default => (quote!(()), Span::call_site()),
    };
    // The arguments of `next` are located at the return type, where "not a `Result`" and
    // "cannot say that an attempt timed out" are reported.
    let at_return = Span::mixed_site().located_at(return_span);
    let policy_ident = format_ident!("__gate_policy", span = at_return);
    let outcome = format_ident!("__gate_outcome", span = at_return);
    let attempts = local("attempts");
    let delay = local("delay");
    let returned = local("returned");
    let fake_return = local("fake_return");
    let permit = local("permit");

    let duration = |ms: Millis, span: Span| {
        let mut ms = Literal::u64_unsuffixed(ms.0);
        ms.set_span(span);
        quote_spanned!(span=> #private::Duration::from_millis(#ms))
    };
    let mut retries = Literal::u32_unsuffixed(policy.retries.as_ref().map_or(0, |r| r.value));
    if let Some(retry) = &policy.retries {
        retries.set_span(retry.span);
    }
    let mut settings = match &policy.delay {
        Delay::Immediate => TokenStream::new(),
        Delay::Fixed(wait) => {
            let wait = duration(wait.value, wait.span);
            quote!(.fixed(#wait))
        }
        Delay::Exponential { wait, max } => {
            let base = duration(wait.value, wait.span);
            let max = match max {
                Some(max) => duration(max.value, max.span),
                None => quote!(#private::Duration::MAX),
            };
            quote!(.exponential(#base, #max))
        }
    };
    if let Some(jitter) = &policy.jitter {
        let on = syn::LitBool::new(jitter.value, jitter.span);
        settings.extend(quote!(.jitter(#on)));
    }
    // Passed to each `next` after the attempt's value, so that a predicate of the wrong type
    // is reported on the predicate, against the now-known error type.
    let retry_if = match &policy.retry_if {
        Some(retry_if) => retry_if.value.to_token_stream(),
        None => relocate(quote!(#private::always), return_span),
    };

    // The "fake return edge": the attempt's `async` block is typed by the function's return
    // type, and a mismatch is reported against that type.
    let fake_return_edge = quote_spanned! {return_span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake_return: #return_type = loop {};
            return #fake_return;
        }
    };
    // Spanned at `async fn` and at `retry`: a body that moves an argument is told "value moved
    // here (the `async`), in previous iteration of loop (the `retry`)".
    let async_span = sig.asyncness.map_or_else(Span::call_site, |a| a.span);
    let async_token = quote_spanned!(async_span=> async);
    let attempt = quote! {
        #async_token {
            #fake_return_edge
            { #stmts }
        }
    };
    let loop_token = quote_spanned!(policy.key.1=> loop);
    let (run, method) = match &policy.timeout {
        Some(timeout) => {
            let limit = duration(timeout.value, timeout.span);
            (
                quote!(#private::Attempt::within(#limit, #attempt).await),
                "next_timed",
            )
        }
        None => (quote!(#attempt.await), "next"),
    };
    // With a cost, `next_settled` settles a success's reservation before it is reported.
    let method = match &policy.cost {
        Some(_) => format_ident!("{method}_settled"),
        None => format_ident!("{method}"),
    };
    // `next(...)` spans the whole return type, from its first token (the path) to its last
    // (the parentheses), so the errors it raises underline that type.
    let (first, last) = token_span_range(&sig.output);
    let path = relocate(quote!(#private::#method), first);
    let mut ours = relocate(
        quote!(&mut #attempts, #permit, #outcome, &#policy_ident,),
        first,
    );
    // Like `retry_if`, after the attempt's value, so that the error type is known; the
    // default's bound (`E: From<Elapsed>`) is reported on the return type.
    if policy.timeout.is_some() {
        let timed_out = match &policy.timeout_error {
            Some(timeout_error) => timeout_error.value.to_token_stream(),
            None => relocate(quote!(#private::from_elapsed), first),
        };
        ours.extend(quote!(#timed_out,));
    }
    // Read from a success to settle its reservation; the default's bound
    // (`T: TokenUsage`) is reported on the return type.
    if let Some(cost) = &policy.cost {
        let usage = match &cost.usage {
            Some(usage) => usage.value.to_token_stream(),
            None => relocate(quote!(#private::tokens_used), first),
        };
        ours.extend(quote!(#usage,));
    }
    let mut call_args = Group::new(Delimiter::Parenthesis, quote!(#ours #retry_if));
    call_args.set_span(last);
    let next = quote!(#path #call_args);
    let mut builder = quote!(#private::Retry::builder(#retries) #settings);
    if policy.backpressure {
        // Located at the return type, where "the error type cannot say it is overloaded"
        // is reported.
        let honor = relocate(quote!(#private::backpressure), first);
        let mut call = Group::new(Delimiter::Parenthesis, relocate(builder, first));
        call.set_span(last);
        builder = quote!(#honor #call);
    }
    quote! {
        let #policy_ident = #private::policy(#builder);
        let mut #attempts = #private::Attempts::default();
        #loop_token {
            let #delay = {
                #admit
                let #outcome = #run;
                match #next {
                    #private::Step::Done(#returned) => return #returned,
                    #private::Step::Wait(#delay) => #delay,
                }
            };
            #private::pause(#delay).await;
        }
    }
}

/// The spans of the first and last tokens of the return type.
fn token_span_range(output: &ReturnType) -> (Span, Span) {
    let tokens: Vec<TokenTree> = match output {
        ReturnType::Type(_, ty) => ty.to_token_stream().into_iter().collect(),
        ReturnType::Default => Vec::new(),
    };
    match (tokens.first(), tokens.last()) {
        (Some(first), Some(last)) => (first.span(), last.span()),
        _ => (Span::call_site(), Span::call_site()),
    }
}

/// Moves every token to `at` for error reporting, keeping how its names resolve.
fn relocate(tokens: TokenStream, at: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut moved = Group::new(group.delimiter(), relocate(group.stream(), at));
                moved.set_span(group.span().located_at(at));
                TokenTree::Group(moved)
            }
            mut other => {
                other.set_span(other.span().located_at(at));
                other
            }
        })
        .collect()
}

/// Replaces `impl Trait` by `_`: a `let` cannot name an opaque type, but can infer it.
struct ImplTraitToInfer;

impl VisitMut for ImplTraitToInfer {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](impl_trait.impl_token.span),
            });
        } else {
            visit_mut::visit_type_mut(self, ty);
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn expand_to_string(args: TokenStream, item: TokenStream) -> String {
        gated(args, item).to_string()
    }

    #[test]
    fn a_limit_becomes_a_static_gate_inside_the_body() {
        let out = expand_to_string(
            quote!(limit = 10),
            quote!(
                pub async fn fetch(id: u32) -> u32 {
                    id
                }
            ),
        );
        assert!(
            out.starts_with("pub async fn fetch (id : u32) -> u32 {"),
            "{out}"
        );
        assert!(
            out.contains("static __GATE : :: gate_core :: __private :: Gate = :: gate_core :: __private :: named_gate (10 , :: core :: concat ! (:: core :: module_path ! () , \"::\" , \"fetch\")) ;"),
            "{out}"
        );
        assert!(
            out.contains(":: gate_core :: __private :: refused"),
            "{out}"
        );
        assert!(!out.contains("loop"), "no retry loop without retry: {out}");
        assert!(
            out.ends_with("{ id } }"),
            "the body in generated braces: {out}"
        );
    }

    #[test]
    fn a_shared_gate_and_a_renamed_crate_are_used_as_written() {
        let out = expand_to_string(
            quote!(gate = api::OPENAI, crate = "gate1"),
            quote!(
                async fn f() {}
            ),
        );
        assert!(
            out.contains("gate1 :: __private :: Shared (& api :: OPENAI) . admission ()"),
            "{out}"
        );
        assert!(!out.contains("gate_core"), "{out}");
    }

    #[test]
    fn retries_loop_over_fresh_async_blocks_typed_by_the_return_type() {
        let out = expand_to_string(
            quote!(limit = 2, retry = 3, timeout = "1s"),
            quote!(
                async fn f(x: &str) -> Result<impl Display, E> {
                    Ok(x.len())
                }
            ),
        );
        assert!(out.contains("Retry :: builder (3)"), "{out}");
        assert!(out.contains("loop {"), "{out}");
        assert!(
            out.contains(
                "Attempt :: within (:: gate_core :: __private :: Duration :: from_millis (1000)"
            ),
            "{out}"
        );
        assert!(out.contains("__private :: next_timed ("), "{out}");
        assert!(
            out.contains("__gate_fake_return : Result < _ , E >"),
            "impl Trait becomes _: {out}"
        );
        assert!(
            out.contains("-> Result < impl Display , E >"),
            "the signature is untouched: {out}"
        );
    }

    #[test]
    fn backoff_settings_reach_the_policy() {
        let out = expand_to_string(
            quote!(
                limit = 2,
                retry = 1,
                backoff = "exponential",
                wait = "500ms",
                max_delay = "1m",
                jitter = true,
                retry_if = is_transient
            ),
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains(". exponential (:: gate_core :: __private :: Duration :: from_millis (500) , :: gate_core :: __private :: Duration :: from_millis (60000))"), "{out}");
        assert!(out.contains(". jitter (true)"), "{out}");
        assert!(out.contains(", is_transient)"), "{out}");
    }

    #[test]
    fn a_rate_or_adaptive_limit_becomes_a_lazy_static_limiter() {
        let out = expand_to_string(
            quote!(rate = "500/min", burst = 5, adaptive = "aimd", limit = 20),
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains("const __GATE_RATE : :: gate_core :: __private :: Rate = :: gate_core :: __private :: rate (\"500/min\" , 5) ;"),
            "the rate is checked when the program is compiled: {out}"
        );
        assert!(
            out.contains("static __GATE_LIMITER : :: gate_core :: __private :: LazyLock < :: gate_core :: __private :: Limiter >"),
            "{out}"
        );
        assert!(
            out.contains(". adaptive (:: gate_core :: __private :: aimd (:: core :: option :: Option :: Some (20))) . rate (__GATE_RATE)"),
            "{out}"
        );
        assert!(
            !out.contains("concurrency"),
            "`limit` is the maximum: {out}"
        );
        assert!(
            out.contains("__private :: Admission :: admit (__gate_admission)"),
            "{out}"
        );
        assert!(
            out.contains(
                "__private :: next (& mut __gate_attempts , __gate_permit , __gate_outcome"
            ),
            "each attempt is reported through its permit: {out}"
        );
    }

    #[test]
    fn a_shared_limiter_with_backpressure_honours_retry_after() {
        let out = expand_to_string(
            quote!(limiter = api::GITHUB, timeout = "1s", backpressure = true),
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains(":: gate_core :: __private :: Shared (& api :: GITHUB) . admission ()"),
            "{out}"
        );
        assert!(
            out.contains(":: gate_core :: __private :: backpressure (:: gate_core :: __private :: Retry :: builder (0))"),
            "{out}"
        );
        assert!(out.contains("__private :: next_timed ("), "{out}");
        assert!(!out.contains("__GATE_LIMITER"), "{out}");
    }

    #[test]
    fn a_timeout_error_is_passed_before_retry_if_in_place_of_from_elapsed() {
        let item = quote!(
            async fn f() -> Result<(), OpenAIError> {
                Ok(())
            }
        );
        let out = expand_to_string(
            quote!(limit = 1, timeout = "1s", timeout_error = timed_out),
            item.clone(),
        );
        assert!(
            out.contains("& __gate_policy , timed_out , :: gate_core :: __private :: always)"),
            "{out}"
        );
        assert!(!out.contains("from_elapsed"), "{out}");
        let out = expand_to_string(quote!(limit = 1, timeout = "1s"), item);
        assert!(
            out.contains("& __gate_policy , :: gate_core :: __private :: from_elapsed , :: gate_core :: __private :: always)"),
            "{out}"
        );
    }

    #[test]
    fn a_cost_is_reserved_by_each_attempt_and_settled_before_it_is_reported() {
        let out = expand_to_string(
            quote!(limit = 8, tokens = "180000/min", cost = estimate(&prompt)),
            quote!(
                async fn f(prompt: &str) -> Result<Reply, E> {
                    ask(prompt).await
                }
            ),
        );
        assert!(
            out.contains("const __GATE_TOKENS : :: gate_core :: __private :: Rate = :: gate_core :: __private :: tokens (\"180000/min\") ;"),
            "{out}"
        );
        assert!(
            out.contains(". concurrency (8) . tokens (__GATE_TOKENS)"),
            "{out}"
        );
        let cost = out
            .find("let __gate_cost : u64 = estimate (& prompt) ;")
            .expect("the cost is computed");
        let looped = out.find("loop {").expect("a cost needs the attempt loop");
        assert!(cost < looped, "once per call, not per attempt: {out}");
        assert!(
            out.contains("let __gate_permit = match :: gate_core :: __private :: admit_tokens (__gate_admission , __gate_cost) . await"),
            "{out}"
        );
        assert!(
            out.contains(":: gate_core :: __private :: next_settled (& mut __gate_attempts , __gate_permit , __gate_outcome , & __gate_policy , :: gate_core :: __private :: tokens_used , :: gate_core :: __private :: always)"),
            "settled from `TokenUsage` as it is reported: {out}"
        );

        let out = expand_to_string(
            quote!(limiter = L, cost = n, usage = read_usage, timeout = "1s"),
            quote!(
                async fn f(n: u64) -> Result<Reply, E> {
                    ask(n).await
                }
            ),
        );
        assert!(
            out.contains(":: gate_core :: __private :: next_timed_settled (& mut __gate_attempts , __gate_permit , __gate_outcome , & __gate_policy , :: gate_core :: __private :: from_elapsed , read_usage , :: gate_core :: __private :: always)"),
            "{out}"
        );
        assert!(!out.contains("__GATE_TOKENS"), "{out}");
        let out = expand_to_string(
            quote!(limit = 1, retry = 1),
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(!out.contains("settle"), "no cost, nothing to settle: {out}");
        assert!(!out.contains("admit_tokens"), "{out}");
    }

    #[test]
    fn on_error_the_item_is_kept_next_to_the_error() {
        let out = expand_to_string(
            quote!(limit = 1),
            quote!(
                fn f() -> u32 {
                    1
                }
            ),
        );
        assert!(out.starts_with("fn f () -> u32 { 1 }"), "{out}");
        assert!(out.contains("requires an `async fn`"), "{out}");

        let out = expand_to_string(
            quote!(limt = 1),
            quote!(
                fn f() {}
            ),
        );
        assert!(out.contains("unknown argument `limt`"), "{out}");
        assert!(
            out.contains("requires an `async fn`"),
            "both problems at once: {out}"
        );

        let out = expand_to_string(
            quote!(limit = 1),
            quote!(
                struct S;
            ),
        );
        assert!(out.starts_with("struct S ;"), "{out}");
        assert!(out.contains("not to a struct"), "{out}");

        let out = expand_to_string(
            quote!(limit = 1, retry = 2),
            quote!(
                async fn f() {}
            ),
        );
        assert!(
            out.contains("`retry` needs a function that returns a `Result`"),
            "{out}"
        );
    }

    #[test]
    fn a_gate_and_a_limiter_are_admitted_alike_and_report_each_attempt() {
        for key in [quote!(gate), quote!(limiter), quote!(limit)] {
            let value = if key.to_string() == "limit" {
                quote!(2)
            } else {
                quote!(SHARED)
            };
            let out = expand_to_string(
                quote!(#key = #value, retry = 1),
                quote!(
                    async fn f() -> Result<(), E> {
                        Ok(())
                    }
                ),
            );
            assert!(
                out.contains(":: gate_core :: __private :: Admission :: admit (__gate_admission)"),
                "{key}: {out}"
            );
            assert!(
                out.contains(
                    ":: gate_core :: __private :: next (& mut __gate_attempts , __gate_permit ,"
                ),
                "{key}: every attempt's permit is handed over: {out}"
            );
        }
    }

    #[test]
    fn a_syntax_error_in_the_body_is_left_to_rustc() {
        // Regression: the whole function was parsed, so a syntax error in the body made
        // `#[gated]` emit the function unexpanded with a second error of its own.
        let body: TokenStream = "async fn f() -> u32 { let x = ; x }".parse().unwrap();
        let out = expand_to_string(quote!(limit = 1), body);
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("Admission :: admit"), "expanded anyway: {out}");
        assert!(
            out.contains("{ let x = ; x }"),
            "the body as written: {out}"
        );
    }

    #[test]
    fn inner_attributes_stay_first_in_the_body() {
        let out = expand_to_string(
            quote!(limit = 1),
            quote!(
                async fn f() -> u32 {
                    #![allow(unused_variables)]
                    let x = 1;
                    2
                }
            ),
        );
        assert!(
            out.starts_with(
                "async fn f () -> u32 { # ! [allow (unused_variables)] let __gate_admission"
            ),
            "{out}"
        );
        assert!(out.ends_with("{ let x = 1 ; 2 } }"), "{out}");
    }

    #[test]
    fn a_body_from_a_macro_rules_block_fragment_is_unwrapped() {
        let body = Group::new(Delimiter::None, quote!({ x * 2 }));
        let item = quote!(async fn double(x: u32) -> u32 #body);
        let out = expand_to_string(quote!(limit = 2), item);
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.ends_with("{ x * 2 } }"), "{out}");
    }
}
