//! Attacks on the compile cache, the path by which machine code gets run
//! without being compiled here: a tampered entry, an entry signed under
//! another key, a candidate that failed its checks, and a compile bomb.

mod util;

use std::os::unix::fs::PermissionsExt;

use sluice::metrics::Metrics;
use sluice::plugin::{
    CacheKey, EngineOptions, PluginEngine, PluginInstance, PluginKind, PluginSlot, Sandbox,
    SlotSpec,
};
use util::{batch, plugin};

fn engine(cache: &std::path::Path, key: &CacheKey) -> PluginEngine {
    PluginEngine::with_options(EngineOptions {
        cache_dir: Some(cache.to_owned()),
        cache_key: Some(key.clone()),
        ..Default::default()
    })
    .unwrap()
}

fn entries(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_tampered_or_foreign_entry_is_compiled_again_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let key = CacheKey::ephemeral();
    let first = engine(&cache, &key);
    let loaded = first.load(&plugin("noop"), None).unwrap();
    assert!(!loaded.cached);
    first.remember(&loaded);
    let files = entries(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700, "the cache directory is owner-only");
    assert_eq!(mode(&files[0]), 0o600, "entries are owner-only");

    // Same key: the entry is used.
    assert!(
        engine(&cache, &key)
            .load(&plugin("noop"), None)
            .unwrap()
            .cached
    );
    // Another key (another installation's, or an attacker's): not used.
    let other = engine(&cache, &CacheKey::ephemeral());
    assert!(!other.load(&plugin("noop"), None).unwrap().cached);

    // One byte of machine code changed: not used; the plugin compiles
    // again and runs as it should.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&files[0], &bytes).unwrap();
    let again = engine(&cache, &key);
    let loaded = again.load(&plugin("noop"), None).unwrap();
    assert!(!loaded.cached, "a tampered entry must not be loaded");
    let mut instance = PluginInstance::new(
        again,
        loaded,
        "noop",
        "{}".into(),
        sluice::plugin::Limits::default(),
    );
    assert_eq!(
        instance.call(&batch(&["a", "b"])).unwrap().outcomes.len(),
        2
    );
}

#[test]
fn a_candidate_that_fails_its_checks_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let path = plugins.join("misbehave.wasm");
    std::fs::copy(plugin("misbehave"), &path).unwrap();
    // Its self-test batch fails: the plugin is refused.
    std::fs::write(
        plugins.join("misbehave.selftest.jsonl"),
        "{\"body\":\"x\"}\n",
    )
    .unwrap();
    let engine = engine(&cache, &CacheKey::ephemeral());
    let spec = SlotSpec {
        name: "candidate".into(),
        kind: PluginKind::Interceptor,
        path,
        team: "default".into(),
        pin: None,
        config_json: r#"{"mode":"fail"}"#.into(),
        sandbox: Sandbox::default(),
    };
    let refused = PluginSlot::load(&engine, spec, &Metrics::default());
    assert!(refused.is_err());
    assert!(
        entries(&cache).is_empty(),
        "nothing cached: {:?}",
        entries(&cache)
    );
}

#[test]
fn a_compile_that_takes_too_long_is_refused() {
    // mask compiles in about a second; a limit of a millisecond stands in
    // for a compile bomb without burning minutes of CPU.
    let engine = PluginEngine::with_options(EngineOptions {
        compile_timeout: std::time::Duration::from_millis(1),
        ..Default::default()
    })
    .unwrap();
    let Err(err) = engine.load(&plugin("mask"), None) else {
        panic!("compiled within a millisecond");
    };
    assert!(err.to_string().contains("compile timeout"), "{err}");
}
