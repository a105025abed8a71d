//! Code generation for `#[gated]`: check the item, then replace only the function's body.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Item, ItemFn, ReturnType, Stmt, Type};

use crate::args::{AdaptiveKind, Args, BackoffKind};
use crate::duration::Millis;

/// Expands `#[gated(args)] item`. On any error, the item is emitted unchanged next to the
/// errors, so that the rest of the program (and rust-analyzer) still sees the function.
pub(crate) fn gated(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(e) => return with_error(item.clone(), not_a_function(item).unwrap_or(e)),
    };
    let args = Args::parse(args);
    let checked = check_signature(&function, args.as_ref().ok());
    match (args, checked) {
        (Ok(args), Ok(())) => expand(&args, function),
        (Ok(_), Err(e)) | (Err(e), Ok(())) => with_error(item, e),
        (Err(mut e), Err(more)) => {
            e.combine(more);
            with_error(item, e)
        }
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
fn check_signature(function: &ItemFn, args: Option<&Args>) -> syn::Result<()> {
    let sig = &function.sig;
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
    if let (Some((key, span)), ReturnType::Default) = (args.and_then(Args::policy_key), &sig.output)
    {
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

fn expand(args: &Args, mut function: ItemFn) -> TokenStream {
    let private = match &args.krate {
        Some(krate) => {
            let path = &krate.value;
            quote!(#path::__private)
        }
        None => quote!(::gate_core::__private),
    };
    let name = function.sig.ident.unraw().to_string();
    let gate = local("gate");
    let permit = local("permit");
    let error = local("error");
    let stmts = &function.block.stmts;

    let (admission, admission_type, admission_expr) = if args.uses_limiter() {
        (
            local("limiter"),
            quote!(#private::Limiter),
            limiter_expr(args, &private, &name),
        )
    } else {
        (gate, quote!(#private::Gate), gate_expr(args, &private))
    };
    let admit = quote! {
        let #permit = match #admission_type::acquire(#admission).await {
            ::core::result::Result::Ok(#permit) => #permit,
            ::core::result::Result::Err(#error) => #private::refused(#error, #name),
        };
    };

    let body = if args.needs_policy() {
        expand_policy(args, &function, &private, &admit)
    } else {
        quote! {
            #admit
            { #(#stmts)* }
        }
    };
    let block = quote! {
        let #admission: &'static #admission_type = #admission_expr;
        #body
    };
    function.block.stmts = vec![Stmt::Expr(Expr::Verbatim(block), None)];
    function.into_token_stream()
}

/// The function's gate: its own `static Gate` (`limit = N`), or the one it shares.
fn gate_expr(args: &Args, private: &TokenStream) -> TokenStream {
    match (&args.limit, &args.gate) {
        (Some(limit), _) => {
            let mut n = Literal::u64_unsuffixed(limit.value);
            n.set_span(limit.span);
            quote! {{
                static __GATE: #private::Gate = #private::Gate::new(#n);
                &__GATE
            }}
        }
        (None, Some(shared)) => {
            let path = &shared.value;
            quote_spanned!(shared.span=> #private::shared_gate(&#path))
        }
        (None, None) => unreachable!("validated: one of `limit` and `gate`"),
    }
}

/// The function's limiter: the one it shares (`limiter = PATH`), or its own, built on the
/// first call into a `static LazyLock` (so, like a `limit`, shared by every call and every
/// instantiation).
fn limiter_expr(args: &Args, private: &TokenStream, name: &str) -> TokenStream {
    if let Some(shared) = &args.limiter {
        let path = &shared.value;
        return quote_spanned!(shared.span=> #private::shared_limiter(&#path));
    }
    let limit = args.limit.as_ref().map(|limit| {
        let mut n = Literal::usize_unsuffixed(usize::try_from(limit.value).unwrap_or(usize::MAX));
        n.set_span(limit.span);
        n
    });
    let mut settings = TokenStream::new();
    match (&args.adaptive, &limit) {
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
    if let Some(rate) = &args.rate {
        let text = &rate.value;
        let mut burst = Literal::u32_unsuffixed(args.burst.as_ref().map_or(1, |b| b.value));
        if let Some(b) = &args.burst {
            burst.set_span(b.span);
        }
        // Evaluated when the program is compiled, by the same `Rate::parse` as at run time;
        // located at the literal, so a malformed rate is a compile error there.
        let value = relocate(quote!(#private::rate(#text, #burst)), rate.span);
        rate_const = quote! {
            const __GATE_RATE: #private::Rate = #value;
        };
        let konst = relocate(quote!(__GATE_RATE), rate.span);
        settings.extend(quote!(.rate(#konst)));
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
/// block borrowing the arguments (and `&mut self`) only while it runs.
fn expand_policy(
    args: &Args,
    function: &ItemFn,
    private: &TokenStream,
    admit: &TokenStream,
) -> TokenStream {
    let (return_type, return_span) = match &function.sig.output {
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
    let policy = format_ident!("__gate_policy", span = at_return);
    let outcome = format_ident!("__gate_outcome", span = at_return);
    let attempts = local("attempts");
    let delay = local("delay");
    let returned = local("returned");
    let fake_return = local("fake_return");

    let duration = |ms: Millis, span: Span| {
        let mut ms = Literal::u64_unsuffixed(ms.0);
        ms.set_span(span);
        quote_spanned!(span=> #private::Duration::from_millis(#ms))
    };
    let mut retries = Literal::u32_unsuffixed(args.retry.as_ref().map_or(0, |r| r.value));
    if let Some(retry) = &args.retry {
        retries.set_span(retry.span);
    }
    let mut settings = TokenStream::new();
    let exponential = matches!(&args.backoff, Some(b) if b.value == BackoffKind::Exponential);
    match (&args.wait, exponential) {
        (Some(wait), true) => {
            let base = duration(wait.value, wait.span);
            let max = match &args.max_delay {
                Some(max) => duration(max.value, max.span),
                None => quote!(#private::Duration::MAX),
            };
            settings.extend(quote!(.exponential(#base, #max)));
        }
        (Some(wait), false) => {
            let wait = duration(wait.value, wait.span);
            settings.extend(quote!(.fixed(#wait)));
        }
        (None, _) => {}
    }
    if let Some(jitter) = &args.jitter {
        let on = syn::LitBool::new(jitter.value, jitter.span);
        settings.extend(quote!(.jitter(#on)));
    }
    // Passed to each `next` after the attempt's value, so that a predicate of the wrong type
    // is reported on the predicate, against the now-known error type.
    let retry_if = match &args.retry_if {
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
    let stmts = &function.block.stmts;
    // Spanned at `async fn` and at `retry`: a body that moves an argument is told "value moved
    // here (the `async`), in previous iteration of loop (the `retry`)".
    let async_span = function
        .sig
        .asyncness
        .map_or_else(Span::call_site, |a| a.span);
    let async_token = quote_spanned!(async_span=> async);
    let attempt = quote! {
        #async_token {
            #fake_return_edge
            { #(#stmts)* }
        }
    };
    let loop_span = args
        .policy_key()
        .map_or_else(Span::call_site, |(_, span)| span);
    let loop_token = quote_spanned!(loop_span=> loop);
    let (run, method) = match &args.timeout {
        Some(timeout) => {
            let limit = duration(timeout.value, timeout.span);
            (
                quote!(#private::attempt_timeout(#limit, #attempt).await),
                "next_timed",
            )
        }
        None => (quote!(#attempt.await), "next"),
    };
    // With a limiter, each attempt reports how it ended through its permit, which `next`
    // then takes (and so releases before any backoff).
    let limiter = args.uses_limiter();
    let (method, permit) = if limiter {
        let permit = local("permit");
        (format_ident!("{method}_reported"), quote!(#permit,))
    } else {
        (format_ident!("{method}"), TokenStream::new())
    };
    // `Attempts::next(...)` spans the whole return type, from its first token (the path) to
    // its last (the parentheses), so the errors it raises underline that type.
    let (first, last) = token_span_range(&function.sig.output);
    let path = relocate(quote!(#private::Attempts::#method), first);
    let ours = relocate(quote!(&mut #attempts, #permit #outcome, &#policy,), first);
    let mut call_args = Group::new(Delimiter::Parenthesis, quote!(#ours #retry_if));
    call_args.set_span(last);
    let next = quote!(#path #call_args);
    let mut builder = quote!(#private::Retry::builder(#retries) #settings);
    if matches!(&args.backpressure, Some(b) if b.value) {
        // Located at the return type, where "the error type cannot say it is overloaded"
        // is reported.
        let honor = relocate(quote!(#private::backpressure), first);
        let mut call = Group::new(Delimiter::Parenthesis, relocate(builder, first));
        call.set_span(last);
        builder = quote!(#honor #call);
    }
    let attempt_then_decide = if limiter {
        quote! {
            let #delay = {
                #admit
                let #outcome = #run;
                match #next {
                    #private::Step::Done(#returned) => return #returned,
                    #private::Step::Wait(#delay) => #delay,
                }
            };
        }
    } else {
        quote! {
            let #outcome = {
                #admit
                #run
            };
            let #delay = match #next {
                #private::Step::Done(#returned) => return #returned,
                #private::Step::Wait(#delay) => #delay,
            };
        }
    };
    quote! {
        let #policy = #private::policy(#builder);
        let mut #attempts = #private::Attempts::default();
        #loop_token {
            #attempt_then_decide
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
            out.contains("static __GATE : :: gate_core :: __private :: Gate = :: gate_core :: __private :: Gate :: new (10) ;"),
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
            out.contains("gate1 :: __private :: shared_gate (& api :: OPENAI)"),
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
                "attempt_timeout (:: gate_core :: __private :: Duration :: from_millis (1000)"
            ),
            "{out}"
        );
        assert!(out.contains("Attempts :: next_timed"), "{out}");
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
        assert!(out.contains("Limiter :: acquire (__gate_limiter)"), "{out}");
        assert!(
            out.contains(
                "Attempts :: next_reported (& mut __gate_attempts , __gate_permit , __gate_outcome"
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
            out.contains(":: gate_core :: __private :: shared_limiter (& api :: GITHUB)"),
            "{out}"
        );
        assert!(
            out.contains(":: gate_core :: __private :: backpressure (:: gate_core :: __private :: Retry :: builder (0))"),
            "{out}"
        );
        assert!(out.contains("Attempts :: next_timed_reported"), "{out}");
        assert!(!out.contains("__GATE_LIMITER"), "{out}");
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
}
