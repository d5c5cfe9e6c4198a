//! Attribute macros behind `#[sluice_guest::interceptor]`,
//! `#[sluice_guest::decoder]` and `#[sluice_guest::router]`.
//!
//! Do not depend on this crate directly: use the re-exports of `sluice-guest`,
//! whose docs describe what the macros accept. The generated code refers to
//! `::sluice_guest::__private`, so it only compiles in a crate that depends on
//! `sluice-guest`.
//!
//! Each macro re-emits the annotated function unchanged and appends:
//!
//! - a hidden type check that the function fits `sluice_guest::Handler`
//!   (so a wrong signature is reported on native builds too, and the function
//!   counts as used), and likewise that the `prepare = <function>` argument,
//!   if given, fits `sluice_guest::Prepare`;
//! - with `prepare`, for `wasm32` only, a hidden function next to the plugin
//!   function returning `sluice_guest::with_prepare(<prepare>, <function>)`
//!   (so the prepare path resolves where the user wrote it);
//! - for `wasm32` only, a private module that implements the `Guest` trait
//!   of the plugin's world (`interceptor`, `decoder` or `router`; exported
//!   interface `intercept`, `decode` or `route`) by handing each batch to
//!   the SDK driver, and calls that world's `export!` macro. Both come from
//!   the bindings `sluice-guest` generates from the WIT it carries
//!   (`sluice_guest::__private::<world>`): this crate and the plugin crate
//!   read no WIT, so they build the same from a checkout or a packaged copy.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// One plugin kind: a world of the contract (`wit/worlds.wit` of
/// `sluice-guest`) and its export.
struct Kind {
    /// World name in `wit/worlds.wit`, also the name of its bindings module
    /// in `sluice_guest::__private`.
    world: &'static str,
    /// Interface the world exports (`wit/processors.wit`).
    interface: &'static str,
    /// Exported function.
    function: &'static str,
}

/// Marks the function that processes each event of an interceptor plugin.
///
/// See `sluice_guest::interceptor` for the accepted signatures.
#[proc_macro_attribute]
pub fn interceptor(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(
        &Kind {
            world: "interceptor",
            interface: "intercept",
            function: "process",
        },
        attr,
        item,
    )
}

/// Marks the function that decodes each event of a decoder plugin.
///
/// See `sluice_guest::decoder` for the accepted signatures.
#[proc_macro_attribute]
pub fn decoder(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(
        &Kind {
            world: "decoder",
            interface: "decode",
            function: "process",
        },
        attr,
        item,
    )
}

/// Marks the function that routes each event of a router plugin.
///
/// See `sluice_guest::router` for the accepted signatures.
#[proc_macro_attribute]
pub fn router(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(
        &Kind {
            world: "router",
            interface: "route",
            function: "process",
        },
        attr,
        item,
    )
}

fn expand(kind: &Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let prepare = match prepare_argument(kind, attr) {
        Ok(prepare) => prepare,
        Err((span, message)) => return compile_error(span, &message),
    };
    let name = match function_name(item.clone()) {
        Ok(name) => name,
        Err((span, message)) => return compile_error(span, &message),
    };
    let module = name.trim_start_matches("r#");
    let (prepare_check, handler_fn, handler) = match &prepare {
        None => (String::new(), String::new(), format!("super::{name}")),
        Some(prepare) => (
            format!("::sluice_guest::__private::assert_prepare({prepare});"),
            format!(
                r#"
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
fn __sluice_guest_{module}_handler() -> impl ::sluice_guest::Handler {{
    ::sluice_guest::with_prepare({prepare}, {name})
}}
"#
            ),
            format!("super::__sluice_guest_{module}_handler()"),
        ),
    };
    let generated = format!(
        r#"
#[doc(hidden)]
#[allow(dead_code)]
const _: fn() = || {{ ::sluice_guest::__private::assert_handler({name}); {prepare_check} }};
{handler_fn}
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[allow(unsafe_code, unused, missing_docs, unreachable_pub, clippy::all)]
mod __sluice_guest_{module} {{
    struct Plugin;

    impl ::sluice_guest::__private::{world}::exports::sluice::plugin::{interface}::Guest for Plugin {{
        fn {function}(
            batch: ::sluice_guest::__private::types::Batch,
        ) -> ::core::result::Result<
            ::sluice_guest::__private::types::BatchResult,
            ::sluice_guest::__private::types::PluginError,
        > {{
            ::sluice_guest::__private::run(batch, {handler})
        }}
    }}

    ::sluice_guest::__private::{world}::export!(Plugin with_types_in ::sluice_guest::__private::{world});
}}
"#,
        world = kind.world,
        interface = kind.interface,
        function = kind.function,
    );
    let generated: TokenStream = match generated.parse() {
        Ok(tokens) => tokens,
        Err(e) => {
            return compile_error(
                Span::call_site(),
                &format!("sluice_guest: generated invalid code: {e}"),
            );
        }
    };
    let mut out = item;
    out.extend(generated);
    out
}

/// The function path of the attribute's only accepted argument,
/// `prepare = <function>`; `None` without arguments.
fn prepare_argument(kind: &Kind, attr: TokenStream) -> Result<Option<String>, (Span, String)> {
    let usage = || {
        format!(
            "#[sluice_guest::{}] takes only `prepare = <function>` (a fn(&[Event]) run once per batch); \
             read configuration with sluice_guest::config()",
            kind.world
        )
    };
    let mut tokens = attr.into_iter();
    let Some(first) = tokens.next() else {
        return Ok(None);
    };
    match &first {
        TokenTree::Ident(ident) if ident.to_string() == "prepare" => {}
        other => return Err((other.span(), usage())),
    }
    match tokens.next() {
        Some(TokenTree::Punct(p)) if p.as_char() == '=' => {}
        Some(other) => return Err((other.span(), usage())),
        None => return Err((first.span(), usage())),
    }
    let rest: Vec<TokenTree> = tokens.collect();
    if let Some(comma) = rest
        .iter()
        .find(|tt| matches!(tt, TokenTree::Punct(p) if p.as_char() == ','))
    {
        return Err((comma.span(), usage()));
    }
    if rest.is_empty() {
        return Err((first.span(), usage()));
    }
    Ok(Some(rest.into_iter().collect::<TokenStream>().to_string()))
}

/// Finds the name of the `fn` item in `item`.
fn function_name(item: TokenStream) -> Result<String, (Span, String)> {
    let mut tokens = item.into_iter();
    while let Some(tt) = tokens.next() {
        if let TokenTree::Ident(ident) = &tt {
            match ident.to_string().as_str() {
                "fn" => {
                    return match tokens.next() {
                        Some(TokenTree::Ident(name)) => Ok(name.to_string()),
                        _ => Err((ident.span(), "expected a function name after `fn`".into())),
                    };
                }
                "async" => {
                    return Err((
                        ident.span(),
                        "a sluice plugin function cannot be async".into(),
                    ));
                }
                _ => {}
            }
        }
    }
    Err((
        Span::call_site(),
        "#[sluice_guest::...] must be placed on a function".into(),
    ))
}

/// `compile_error!("message")` at `span`.
fn compile_error(span: Span, message: &str) -> TokenStream {
    let mut path = TokenStream::new();
    path.extend([
        TokenTree::Punct(Punct::new(':', Spacing::Joint)),
        TokenTree::Punct(Punct::new(':', Spacing::Alone)),
        TokenTree::Ident(Ident::new("core", span)),
        TokenTree::Punct(Punct::new(':', Spacing::Joint)),
        TokenTree::Punct(Punct::new(':', Spacing::Alone)),
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(Punct::new('!', Spacing::Alone)),
    ]);
    let mut literal = proc_macro::Literal::string(message);
    literal.set_span(span);
    let mut args = Group::new(Delimiter::Parenthesis, TokenTree::Literal(literal).into());
    args.set_span(span);
    let mut out: Vec<TokenTree> = path.into_iter().collect();
    for tt in &mut out {
        tt.set_span(span);
    }
    out.push(TokenTree::Group(args));
    out.push(TokenTree::Punct(Punct::new(';', Spacing::Alone)));
    out.into_iter().collect()
}
