//! Scenario: files dropped into a watched plugin directory. A good new
//! version goes live at the next batch and is stamped on the output; a
//! corrupt file, a component of the wrong world, a file that traps on its
//! self-test, a file whose digest differs from the pinned one, and a deleted
//! file all leave the running version serving, with the refusal logged and
//! counted.

mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice::config::PluginKind;
use sluice::metrics::Metrics;
use sluice::plugin::chain::LINEAGE;
use sluice::plugin::engine::tagged_build as variant;
use sluice::plugin::registry::read_status;
use sluice::plugin::reload::{self, WatchSet};
use sluice::plugin::{
    Chain, PluginEngine, PluginSlot, Registry, Sandbox, SlotSpec, Stage, StagePolicy,
};
use util::{batch, deploy, plugin, wait_until};

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    status: std::path::PathBuf,
    slot: Arc<PluginSlot>,
    metrics: Arc<Metrics>,
    chain: Chain,
    _watcher: reload::Watcher,
}

fn fixture(initial: &[u8], config: &str, pin: Option<String>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, initial).unwrap();
    let engine = PluginEngine::new().unwrap();
    let metrics = Arc::new(Metrics::default());
    let slot = PluginSlot::load(
        &engine,
        SlotSpec {
            name: "p".into(),
            kind: PluginKind::Interceptor,
            path: path.clone(),
            team: "t".into(),
            pin,
            config_json: config.into(),
            sandbox: Sandbox::default(),
        },
        &metrics,
    )
    .expect("the initial version loads");
    let status = dir.path().join("status.json");
    let mut registry = Registry::new(Some(status.clone()));
    registry.insert(slot.clone());
    registry.write_status();
    let chain = Chain::new(vec![Stage::from_slot(
        slot.clone(),
        &engine,
        StagePolicy::default(),
        &metrics,
    )]);
    let watcher = reload::watch(WatchSet {
        registry,
        engine,
        tables: Vec::new(),
        resume_dir: dir.path().join("control"),
        resume: BTreeMap::new(),
    })
    .unwrap();
    Fixture {
        _dir: dir,
        path,
        status,
        slot,
        metrics,
        chain,
        _watcher: watcher,
    }
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin(name)).unwrap()
}

fn lineage(f: &mut Fixture) -> String {
    let out = f.chain.process(batch(&["a", "b"]));
    assert_eq!(out.default.len(), 2, "the running version serves");
    let first = String::from_utf8(
        out.default
            .get(0)
            .unwrap()
            .header(LINEAGE)
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let second = String::from_utf8(
        out.default
            .get(1)
            .unwrap()
            .header(LINEAGE)
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(first, second, "one version per batch");
    first
}

fn refused(f: &Fixture, n: u64) {
    wait_until("the refusal", WAIT, || {
        f.metrics.get("plugin.p.reloads_rejected") >= n
    });
}

#[test]
fn a_good_version_goes_live_and_bad_files_leave_it_serving() {
    let noop = bytes("noop");
    let mut f = fixture(&noop, "{}", None);
    let v1 = f.slot.current().loaded.digest.clone();
    assert_eq!(lineage(&mut f), format!("p@{}", &v1[..16]));

    // A new good version: live from the next batch, stamped on the output.
    let v2_bytes = variant(&noop, "v2");
    deploy(&f.path, &v2_bytes);
    wait_until("the swap", WAIT, || f.slot.current().generation == 2);
    let v2 = f.slot.current().loaded.digest.clone();
    assert_ne!(v1, v2);
    assert_eq!(lineage(&mut f), format!("p@{}", &v2[..16]));
    wait_until("the status file", WAIT, || {
        read_status(&f.status).is_ok_and(|s| s[0].generation == 2)
    });
    assert_eq!(read_status(&f.status).unwrap()[0].digest, v2);

    // Corrupt file.
    deploy(&f.path, b"\0asm garbage that is no component");
    refused(&f, 1);
    // Wrong world: a decoder dropped where an interceptor runs.
    deploy(&f.path, &bytes("delimited"));
    refused(&f, 2);
    assert_eq!(
        f.slot.current().loaded.digest,
        v2,
        "the old version keeps serving"
    );
    assert_eq!(lineage(&mut f), format!("p@{}", &v2[..16]));
    // The status file (written after the refusal is counted) says why.
    wait_until("the refusal in the status file", WAIT, || {
        read_status(&f.status).is_ok_and(|s| {
            s[0].last_rejection
                .as_deref()
                .is_some_and(|r| r.contains("does not implement the `interceptor` world"))
        })
    });

    // Deleted: the running version keeps serving.
    std::fs::remove_file(&f.path).unwrap();
    wait_until("the deletion to be noticed", WAIT, || {
        f.metrics.get("plugin.p.file_missing") >= 1
    });
    assert_eq!(lineage(&mut f), format!("p@{}", &v2[..16]));
    assert_eq!(f.metrics.get("plugin.p.reloads"), 1);
}

#[test]
fn a_file_that_traps_on_its_self_test_is_refused() {
    let misbehave = bytes("misbehave");
    let mut f = fixture(
        &misbehave,
        r#"{"mode":"trap","when_body":"selftest-boom"}"#,
        None,
    );
    let v1 = f.slot.current().loaded.digest.clone();
    // The plugin now ships a self-test its new build does not survive.
    std::fs::write(
        sluice::plugin::registry::self_test_path(&f.path),
        "{\"body\": \"fine\"}\n{\"body\": \"selftest-boom\"}\n",
    )
    .unwrap();
    deploy(&f.path, &variant(&misbehave, "v2"));
    refused(&f, 1);
    assert_eq!(f.slot.current().loaded.digest, v1);
    let status = f.slot.status();
    assert!(
        status
            .last_rejection
            .as_deref()
            .is_some_and(|r| r.contains("self-test") && r.contains("trapped")),
        "{status:?}"
    );
    assert_eq!(lineage(&mut f), format!("p@{}", &v1[..16]));
}

#[test]
fn pinning_refuses_a_file_with_another_digest() {
    let noop = bytes("noop");
    let pin = sluice::plugin::engine::digest(&noop);
    let mut f = fixture(&noop, "{}", Some(pin.clone()));
    deploy(&f.path, &variant(&noop, "unpinned"));
    refused(&f, 1);
    let status = f.slot.status();
    assert!(
        status
            .last_rejection
            .as_deref()
            .is_some_and(|r| r.contains("does not match the pinned sha256")),
        "{status:?}"
    );
    assert_eq!(f.slot.current().loaded.digest, pin);
    assert_eq!(lineage(&mut f), format!("p@{}", &pin[..16]));

    // At startup too: a pinned plugin whose file differs does not load.
    let engine = PluginEngine::new().unwrap();
    let err = PluginSlot::load(
        &engine,
        SlotSpec {
            name: "q".into(),
            kind: PluginKind::Interceptor,
            path: f.path.clone(),
            team: "t".into(),
            pin: Some(pin),
            config_json: "{}".into(),
            sandbox: Sandbox::default(),
        },
        &Metrics::default(),
    )
    .err()
    .expect("refused");
    assert!(err.0.contains("does not match the pinned sha256"), "{err}");
}
