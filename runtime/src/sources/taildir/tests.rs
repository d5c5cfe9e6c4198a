//! Scenario tests of the `taildir` source: growth, rotation by rename and
//! by copy-truncate, restarts and "crashes" (the task aborted with batches
//! in flight), multi-line events.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path, extra: &str) -> TailDirSourceConfig {
    let mut table: toml::Table = toml::from_str(&format!(
        "filegroups = {{ app = {:?} }}\npoll_interval = \"20ms\"\nidle_timeout = \"300ms\"\nbatch_max_wait = \"20ms\"\nmultiline_timeout = \"200ms\"",
        dir.join("*.log").display().to_string()
    ))
    .unwrap();
    table.extend(toml::from_str::<toml::Table>(extra).unwrap());
    let c: TailDirSourceConfig = toml::Value::Table(table).try_into().unwrap();
    c.validate().unwrap();
    c
}

struct Running {
    rx: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
    metrics: Arc<Metrics>,
}

fn start(config: TailDirSourceConfig, state: &Path) -> Running {
    let metrics = Metrics::new();
    let ctx = SourceContext {
        name: "tail".into(),
        metrics: metrics.clone(),
        shutdown: CancellationToken::new(),
        embedded_bootstrap: None,
        state_dir: state.to_owned(),
    };
    let shutdown = ctx.shutdown.clone();
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(run(
        config,
        tx,
        ctx,
        crate::delivery::SourceLink::new("tail"),
    ));
    Running {
        rx,
        shutdown,
        task,
        metrics,
    }
}

impl Running {
    /// Receives and acknowledges batches until `n` events came.
    async fn receive(&mut self, n: usize) -> Vec<(String, HashMap<String, String>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let batch = timeout(WAIT, self.rx.recv())
                .await
                .expect("events in time")
                .expect("source running");
            for e in batch.events.iter() {
                let headers = e
                    .headers()
                    .map(|h| h.expect("a well-formed header"))
                    .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                out.push((String::from_utf8_lossy(e.body()).into_owned(), headers));
            }
            batch.release();
        }
        assert_eq!(out.len(), n, "more events than expected");
        out
    }

    /// Nothing more arrives within a few polls.
    async fn quiet(&mut self) {
        if let Ok(Some(batch)) = timeout(Duration::from_millis(400), self.rx.recv()).await {
            let bodies: Vec<String> = batch
                .events
                .iter()
                .map(|e| String::from_utf8_lossy(e.body()).into_owned())
                .collect();
            panic!("unexpected events: {bodies:?}");
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        while let Ok(Some(batch)) = timeout(WAIT, self.rx.recv()).await {
            batch.release();
        }
        timeout(WAIT, self.task).await.unwrap().unwrap().unwrap();
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}{i}\n")).collect()
}

fn bodies(events: &[(String, HashMap<String, String>)]) -> Vec<String> {
    events.iter().map(|(b, _)| b.clone()).collect()
}

fn expected(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn follows_growing_files_with_path_group_and_static_headers() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, "one\ntwo\npartial");
    std::fs::write(dir.path().join("ignored.txt"), "x\n").unwrap();
    let mut run = start(
        config(
            dir.path(),
            "file_header = \"file\"\ngroup_header = \"filegroup\"\ngroup_headers = { app = { team = \"web\" } }",
        ),
        state.path(),
    );
    let got = run.receive(2).await;
    assert_eq!(bodies(&got), ["one", "two"]);
    let headers = &got[0].1;
    assert_eq!(headers["file"], a.display().to_string());
    assert_eq!(headers["filegroup"], "app");
    assert_eq!(headers["team"], "web");
    // The unterminated line waits for its newline.
    run.quiet().await;
    append(&a, " line\n");
    let b = dir.path().join("b.log");
    append(&b, "from b\n");
    let got = run.receive(2).await;
    let mut got = bodies(&got);
    got.sort();
    assert_eq!(got, ["from b", "partial line"]);
    assert_eq!(
        run.metrics
            .gauge("source.tail.files_tracked")
            .load(Ordering::Relaxed),
        2
    );
    run.stop().await;
}

#[tokio::test]
async fn rename_rotation_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines("g1-", 0..100));
    let mut run = start(config(dir.path(), ""), state.path());
    let mut got = bodies(&run.receive(100).await);
    // A late writer still appends to the renamed file; the new file starts.
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &lines("g1-", 100..150));
    append(&log, &lines("g2-", 0..100));
    got.extend(bodies(&run.receive(150).await));
    run.quiet().await;
    let g1: Vec<String> = got
        .iter()
        .filter(|b| b.starts_with("g1-"))
        .cloned()
        .collect();
    let g2: Vec<String> = got
        .iter()
        .filter(|b| b.starts_with("g2-"))
        .cloned()
        .collect();
    assert_eq!(g1, expected("g1-", 0..150));
    assert_eq!(g2, expected("g2-", 0..100));
    // Both are closed once idle and acknowledged; the rotated one, no
    // longer matched, is forgotten, the other keeps its position.
    let metrics = run.metrics.clone();
    timeout(WAIT, async {
        while metrics.get("source.tail.rotations") != 1
            || metrics
                .gauge("source.tail.files_tracked")
                .load(Ordering::Relaxed)
                != 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    // Closed while idle, opened again when it grows.
    append(&log, "g2-100\n");
    assert_eq!(bodies(&run.receive(1).await), ["g2-100"]);
    run.stop().await;
    let positions: Positions = position_file::load(&state.path().join("taildir.json"))
        .unwrap()
        .unwrap();
    assert_eq!(positions.files.len(), 1);
    assert_eq!(positions.files[0].path, log);
    assert_eq!(
        positions.files[0].pos,
        std::fs::metadata(&log).unwrap().len()
    );
}

#[tokio::test]
async fn copy_truncate_rotation_reads_the_new_generation_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines("old-", 0..50));
    let mut run = start(config(dir.path(), ""), state.path());
    let mut got = bodies(&run.receive(50).await);
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &lines("new-", 0..5));
    got.extend(bodies(&run.receive(5).await));
    run.quiet().await;
    let mut want = expected("old-", 0..50);
    want.extend(expected("new-", 0..5));
    assert_eq!(got, want);
    assert_eq!(run.metrics.get("source.tail.truncations"), 1);
    run.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_every_file_even_one_renamed_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines("a-", 0..30));
    let mut run = start(config(dir.path(), ""), state.path());
    let mut got = bodies(&run.receive(30).await);
    run.stop().await;
    // While stopped: more lines, then a rename rotation and a new file.
    append(&log, &lines("a-", 30..40));
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, &lines("b-", 0..10));
    let mut run = start(config(dir.path(), "skip_to_end = true"), state.path());
    got.extend(bodies(&run.receive(20).await));
    run.quiet().await;
    assert_eq!(
        got.iter()
            .filter(|b| b.starts_with("a-"))
            .cloned()
            .collect::<Vec<_>>(),
        expected("a-", 0..40)
    );
    assert_eq!(
        got.iter()
            .filter(|b| b.starts_with("b-"))
            .cloned()
            .collect::<Vec<_>>(),
        expected("b-", 0..10),
        "a file appearing after the first start is read whole despite skip_to_end"
    );
    run.stop().await;
}

#[tokio::test]
async fn an_aborted_run_resumes_after_the_last_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines("l", 0..3000));
    let extra = "batch_max_events = 100\nbatch_max_wait = \"1h\"";
    let mut run = start(config(dir.path(), extra), state.path());
    let mut delivered = Vec::new();
    for _ in 0..7 {
        let batch = timeout(WAIT, run.rx.recv()).await.unwrap().unwrap();
        delivered.extend(
            batch
                .events
                .iter()
                .map(|e| String::from_utf8_lossy(e.body()).into_owned()),
        );
        batch.release();
    }
    // The 8th is held (in a sink, say) and the 9th fails: neither counts.
    let held = timeout(WAIT, run.rx.recv()).await.unwrap().unwrap();
    let failed = timeout(WAIT, run.rx.recv()).await.unwrap().unwrap();
    failed.ack.fail();
    drop(failed);
    let pos_file = state.path().join("taildir.json");
    let acknowledged: u64 = (0..700).map(|i| format!("l{i}\n").len() as u64).sum();
    timeout(WAIT, async {
        loop {
            let p: Option<Positions> = position_file::load(&pos_file).unwrap();
            if p.is_some_and(|p| p.files.first().is_some_and(|f| f.pos == acknowledged)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    run.task.abort();
    let _ = (&mut run.task).await;
    drop(held);
    let mut run = start(config(dir.path(), extra), state.path());
    delivered.extend(bodies(&run.receive(2300).await));
    assert_eq!(delivered, expected("l", 0..3000));
    run.stop().await;
}

#[tokio::test]
async fn multi_line_events_start_at_matching_lines() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(
        &log,
        "2026-01-01 error\n  at a\n  at b\n2026-01-02 ok\n2026-01-03 trace\n  at c\n",
    );
    let mut run = start(
        config(dir.path(), "multiline_start = '^\\d{4}-'"),
        state.path(),
    );
    // The last event is handed on by the timeout (nothing follows it).
    let got = bodies(&run.receive(3).await);
    assert_eq!(
        got,
        [
            "2026-01-01 error\n  at a\n  at b",
            "2026-01-02 ok",
            "2026-01-03 trace\n  at c"
        ]
    );
    run.stop().await;
    let positions: Positions = position_file::load(&state.path().join("taildir.json"))
        .unwrap()
        .unwrap();
    assert_eq!(
        positions.files[0].pos,
        std::fs::metadata(&log).unwrap().len()
    );
}

#[test]
fn keys_are_checked() {
    let bad = |t: &str| {
        toml::from_str::<TailDirSourceConfig>(t)
            .unwrap()
            .validate()
            .unwrap_err()
            .0
    };
    assert_eq!(bad("filegroups = {}"), "filegroups");
    assert_eq!(bad("filegroups = { a = \"rel/*.log\" }"), "filegroups");
    assert_eq!(
        bad("filegroups = { a = \"/x/*.log\" }\ngroup_headers = { b = { k = \"v\" } }"),
        "group_headers"
    );
    assert_eq!(
        bad("filegroups = { a = \"/x/*.log\" }\nidle_timeout = \"0s\""),
        "idle_timeout"
    );
    assert!(
        toml::from_str::<TailDirSourceConfig>("filegroups = { a = \"/x\" }\npositionFile = \"p\"")
            .is_err()
    );
}
