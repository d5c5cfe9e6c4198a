//! Scenario: a plugin with `on_failure = "pause"` fails a batch. The source's
//! processor holds that batch (nothing is emitted, nothing dropped, nothing
//! taken after it) until a new version of the plugin is published, then runs
//! it again; an operator's resume request does the same without a new version.

mod util;

use std::sync::Arc;
use std::time::Duration;

use sluice::channels::memory::{self, Capacity};
use sluice::config::{FailurePolicy, PluginKind};
use sluice::event::Batch;
use sluice::metrics::Metrics;
use sluice::plugin::registry::Registry;
use sluice::plugin::{Chain, PluginEngine, PluginSlot, Sandbox, SlotSpec, Stage, StagePolicy};
use sluice::topology::processor::{self, Dispatch};
use sluice::topology::routes::{Route, RouteTable};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use util::{batch, plugin};

struct Pipeline {
    input: mpsc::Sender<Batch>,
    output: memory::ChannelReceiver,
    /// A sender of the output channel, to see how much it holds.
    probe: memory::ChannelSender,
    slot: Arc<PluginSlot>,
    engine: PluginEngine,
    resume: Arc<Notify>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

/// A processor whose only plugin fails every batch (`misbehave` without
/// its required `mode`), with the `pause` policy. Deploying `noop` (which
/// accepts the same empty config) fixes it.
fn pipeline() -> Pipeline {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::copy(plugin("misbehave"), &path).unwrap();
    let engine = PluginEngine::new().unwrap();
    let metrics = Arc::new(Metrics::default());
    let slot = PluginSlot::load(
        &engine,
        SlotSpec {
            name: "p".into(),
            kind: PluginKind::Interceptor,
            path,
            team: "t".into(),
            pin: None,
            config_json: "{}".into(),
            sandbox: Sandbox::default(),
        },
        &metrics,
    )
    .unwrap();
    let mut registry = Registry::new(None);
    registry.insert(slot.clone());
    let policy = StagePolicy {
        on_failure: FailurePolicy::Pause,
        ..Default::default()
    };
    let chain = Chain::new(vec![Stage::from_slot(
        slot.clone(),
        &engine,
        policy,
        &metrics,
    )]);
    let (tx, rx) = memory::channel(Capacity {
        events: 10_000,
        bytes: 1 << 20,
    });
    let (input, source) = mpsc::channel(2);
    let resume = Arc::new(Notify::new());
    let routes = Arc::new(RouteTable::default());
    routes.set("out", Route::Ready(tx.clone()));
    let dispatch = Dispatch {
        source: "src".into(),
        default: vec!["out".into()],
        closed: Default::default(),
        dead: Some("out".into()),
        routes,
        metrics: metrics.clone(),
        registry,
        resume: resume.clone(),
        fatal: CancellationToken::new(),
    };
    tokio::spawn(processor::run(
        vec![chain],
        source,
        dispatch,
        CancellationToken::new(),
    ));
    Pipeline {
        input,
        output: rx,
        probe: tx,
        slot,
        engine,
        resume,
        metrics,
        _dir: dir,
    }
}

async fn pauses(p: &Pipeline, n: u64) {
    let wait = async {
        while p.metrics.get("source.src.pauses") < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the source pauses");
}

fn bodies(batch: &Batch) -> Vec<String> {
    batch
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(e.body()).into_owned())
        .collect()
}

async fn fix(p: &mut Pipeline) {
    std::fs::copy(plugin("noop"), p.slot.path()).unwrap();
    let engine = p.engine.clone();
    let slot = p.slot.clone();
    let outcome = tokio::task::spawn_blocking(move || slot.reload(&engine))
        .await
        .unwrap();
    assert!(
        matches!(outcome, sluice::plugin::ReloadOutcome::Swapped { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_releases_the_held_batch_in_order() {
    let mut p = pipeline();
    p.input
        .send(Batch::unacked(batch(&["first", "second"])))
        .await
        .unwrap();
    p.input
        .send(Batch::unacked(batch(&["later"])))
        .await
        .unwrap();
    pauses(&p, 1).await;
    assert_eq!(p.probe.held_events(), 0, "nothing passes while paused");
    assert_eq!(p.metrics.gauge_value("source.src.paused"), 1);

    fix(&mut p).await;
    let held = tokio::time::timeout(Duration::from_secs(20), p.output.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bodies(&held),
        ["first", "second"],
        "the held batch comes first, whole"
    );
    let next = tokio::time::timeout(Duration::from_secs(20), p.output.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&next), ["later"]);
    assert_eq!(p.metrics.gauge_value("source.src.paused"), 0);
    assert_eq!(p.metrics.get("source.src.pauses"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resume_runs_the_held_batch_again() {
    let mut p = pipeline();
    p.input
        .send(Batch::unacked(batch(&["only"])))
        .await
        .unwrap();
    pauses(&p, 1).await;
    // Resumed without a fix: the batch runs again, fails again, pauses again.
    p.resume.notify_waiters();
    pauses(&p, 2).await;
    assert_eq!(p.probe.held_events(), 0);
    fix(&mut p).await;
    let held = tokio::time::timeout(Duration::from_secs(20), p.output.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&held), ["only"]);
}
