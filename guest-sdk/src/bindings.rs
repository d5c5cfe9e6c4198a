//! The component bindings, generated from this crate's own `wit/` (the
//! contract `sluice:plugin@0.1.0`, shipped inside the crate so that a
//! packaged copy builds): wasm builds only.
//!
//! - The root of this module holds the shared `types`, `host` and `lookup`
//!   imports (world `imports`). Borrowing: `get-many` takes the keys as
//!   `&[&str]`, without copying them.
//! - [`interceptor`], [`decoder`] and [`router`] hold the export side of each
//!   plugin world: the `Guest` trait of its interface and an `export!` macro,
//!   public so that the code the attribute macros generate in the *plugin*
//!   crate can call it (through `__private`). That crate therefore never
//!   reads WIT itself. Each world reuses the shared imports above (`with`).
//!
//! wit-bindgen embeds a description of each world for the component linker;
//! for the three plugin worlds it leaves the exports out of this crate's copy
//! and emits the full world where `export!` is invoked, so a plugin's
//! component exports only its own world's interface.

wit_bindgen::generate!({
    path: "wit",
    world: "sluice:plugin/imports@0.1.0",
    generate_unused_types: true,
    ownership: Borrowing { duplicate_if_necessary: false },
});

pub mod interceptor {
    //! Export side of world `interceptor` (interface `intercept`).

    wit_bindgen::generate!({
        path: "wit",
        world: "sluice:plugin/interceptor@0.1.0",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::sluice::plugin::host,
            "sluice:plugin/lookup@0.1.0": crate::bindings::sluice::plugin::lookup,
        },
        pub_export_macro: true,
        default_bindings_module: "::sluice_guest::__private::interceptor",
    });
}

pub mod decoder {
    //! Export side of world `decoder` (interface `decode`).

    wit_bindgen::generate!({
        path: "wit",
        world: "sluice:plugin/decoder@0.1.0",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::sluice::plugin::host,
            "sluice:plugin/lookup@0.1.0": crate::bindings::sluice::plugin::lookup,
        },
        pub_export_macro: true,
        default_bindings_module: "::sluice_guest::__private::decoder",
    });
}

pub mod router {
    //! Export side of world `router` (interface `route`).

    wit_bindgen::generate!({
        path: "wit",
        world: "sluice:plugin/router@0.1.0",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::sluice::plugin::host,
            "sluice:plugin/lookup@0.1.0": crate::bindings::sluice::plugin::lookup,
        },
        pub_export_macro: true,
        default_bindings_module: "::sluice_guest::__private::router",
    });
}
