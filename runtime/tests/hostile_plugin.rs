//! Scenario: a hostile plugin (Rust, `plugins/hostile`) tries to read files,
//! list directories, open a socket, resolve a name, read environment
//! variables, read the wall clock and read another team's lookup table. With
//! nothing granted, every attempt is denied. A positive control shows the
//! same plugin reading its own team's table, a granted environment variable
//! and the real clock when those are granted: the denials come from the
//! sandbox, not from a broken plugin.

mod util;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use sluice::lookup::{Grants, LookupTable};
use sluice::metrics::Metrics;
use sluice::plugin::{Chain, Limits, PluginEngine, PluginInstance, Sandbox, Stage};
use util::{batch, plugin};

fn run(sandbox: Sandbox, config: &str) -> HashMap<String, String> {
    let engine = PluginEngine::new().unwrap();
    let loaded = engine.load(&plugin("hostile"), None).unwrap();
    let instance = PluginInstance::new(engine, loaded, "hostile", config.into(), Limits::default())
        .with_sandbox(sandbox);
    let mut chain = Chain::new(vec![Stage::new(instance, &Metrics::default())]);
    let out = chain.process(batch(&["a", "b"]));
    assert_eq!(
        out.default.len(),
        2,
        "the plugin keeps its events: {:?}",
        out.dead.len()
    );
    out.default
        .get(0)
        .unwrap()
        .headers()
        .map(|h| h.expect("well-formed headers"))
        .filter(|(k, _)| k.starts_with("hostile."))
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn table(name: &str, key: &str, value: &str) -> Arc<LookupTable> {
    let t = Arc::new(LookupTable::new(name));
    t.replace(HashMap::from([(key.to_string(), value.to_string())]));
    t
}

#[test]
fn everything_not_granted_is_denied() {
    // A listener the plugin would reach if sockets were allowed.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "top secret").unwrap();
    // SAFETY: the only write to the environment in this binary; std's own
    // readers take the same lock, and nothing here reads it through libc.
    unsafe { std::env::set_var("SLUICE_HOSTILE_SECRET", "hunter2") };
    let config = format!(
        r#"{{"file":"{}","tcp":"{addr}","hostname":"localhost","env":"SLUICE_HOSTILE_SECRET","lookup_table":"payroll","lookup_key":"alice"}}"#,
        secret.path().display()
    );
    // Team "intruders" is granted only its own table; "payroll" exists but
    // belongs to another team, so it is not in this sandbox's grants.
    let _payroll_of_another_team = table("payroll", "alice", "100000");
    let sandbox = Sandbox {
        grants: Grants::new([table("intruders-own", "x", "y")]),
        ..Sandbox::default()
    };
    let headers = run(sandbox, &config);
    for name in [
        "hostile.fs",
        "hostile.dir",
        "hostile.tcp",
        "hostile.dns",
        "hostile.env",
        "hostile.lookup",
    ] {
        let v = headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing: {headers:?}"));
        assert!(v.starts_with("denied"), "{name}: {v}");
    }
    assert!(
        !headers
            .values()
            .any(|v| v.contains("top secret") || v.contains("hunter2") || v.contains("100000"))
    );
    let clock = &headers["hostile.clock"];
    assert!(
        clock.contains("1970"),
        "wall clock without the grant reads the epoch: {clock}"
    );
    // Nothing connected to the listener.
    assert!(listener.accept().is_err(), "the plugin reached a socket");
}

#[test]
fn granted_capabilities_work_so_the_denials_are_the_sandbox() {
    // The granted variable is given to the sandbox directly; the process
    // environment is left alone (the other test sets one variable in it).
    let sandbox = Sandbox {
        limits: Limits::default(),
        grants: Grants::new([table("own", "alice", "granted-row")]),
        env: vec![("SLUICE_HOSTILE_GRANTED".to_string(), "visible".to_string())].into(),
        clock: true,
        ..Sandbox::default()
    };
    let headers = run(
        sandbox,
        r#"{"env":"SLUICE_HOSTILE_GRANTED","lookup_table":"own","lookup_key":"alice"}"#,
    );
    let lookup = &headers["hostile.lookup"];
    assert!(
        lookup.starts_with("allowed") && lookup.contains("granted-row"),
        "{lookup}"
    );
    let env = &headers["hostile.env"];
    assert!(
        env.starts_with("allowed") && env.contains("visible"),
        "{env}"
    );
    let clock = &headers["hostile.clock"];
    assert!(
        !clock.contains("1970"),
        "the real clock is granted: {clock}"
    );
    assert!(
        headers["hostile.fs"].starts_with("denied"),
        "files are never granted"
    );
    assert!(
        headers["hostile.tcp"].starts_with("denied"),
        "sockets are never granted"
    );
}
