//! The `http` source under backpressure, against a real S3 server (moto):
//! clients POST numbered events into a file channel drained by an S3 sink
//! whose store becomes unreachable mid-stream (a [`FaultProxy`] refuses
//! every connection). The channel fills up, the source answers `503` with
//! `Retry-After`, and the clients send those requests again once it
//! answers; when the store is back everything drains. Every event of every
//! request is in S3 at the end, and the store outage really produced 503s.

use std::net::SocketAddr;
use std::time::Duration;

use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::faults::{FaultPlan, FaultProxy};
use sluice_tests::stream::{Deadline, Tally, id};
use sluice_tests::{s3, services, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const REQUESTS: usize = 300;
const PER_REQUEST: usize = 100;

/// POSTs lines, returns the status code.
async fn post(addr: SocketAddr, body: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {text:?}"))
}

fn body(request: usize) -> String {
    (request * PER_REQUEST..(request + 1) * PER_REQUEST)
        .map(|i| id(i) + "\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_answers_503_and_everything_resent_lands() -> anyhow::Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let prefix = unique("http-backpressure");
    let proxy = FaultProxy::start(&services.s3, FaultPlan::none(3)).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let state = tempfile::tempdir()?;
    let text = format!(
        r#"data_dir = "{state}"

[sources.web]
type = "http"
listen = "{addr}"
path = "/events"
backpressure_wait = "100ms"
channels = ["wal"]

[channels.wal]
type = "file"
segment_size = "64KiB"
max_bytes = "256KiB"

[sinks.lake]
type = "object_store"
channel = "wal"
url = "s3://{bucket}/{prefix}"
path = "web"
format = "jsonl"
roll_size = "64KiB"
roll_interval = "500ms"
retry_backoff_initial = "50ms"
retry_backoff_max = "500ms"
s3 = {{ endpoint = "{endpoint}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}
"#,
        state = state.path().display(),
        bucket = services.bucket,
        endpoint = proxy.url(),
    );
    let config = sluice::config::parse(std::path::Path::new("http.toml"), &text, |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(topology::run(
        config,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));
    let mut wait = Deadline::new("the http source to listen", Duration::from_secs(30));
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        wait.tick(Duration::from_millis(20)).await?;
    }

    // A tenth of the requests go through; then the store goes away and
    // the rest come at once: the channel fills, requests already in the
    // pipeline wait, the others are refused.
    for request in 0..REQUESTS / 10 {
        anyhow::ensure!(
            post(addr, &body(request)).await? == 200,
            "request {request}"
        );
    }
    proxy.outage(true);
    let mut answers = Vec::new();
    for request in REQUESTS / 10..REQUESTS {
        answers.push((request, tokio::spawn(post(addr, body(request).leak()))));
    }
    let mut wait = Deadline::new("requests to be refused with 503", Duration::from_secs(60));
    while metrics.get("source.web.requests_throttled") == 0 || metrics.get("sink.lake.retries") == 0
    {
        wait.tick(Duration::from_millis(50)).await?;
    }
    // The store comes back; the refused requests are sent again until taken.
    proxy.outage(false);
    let mut refused = Vec::new();
    for (request, answer) in answers {
        match answer.await?? {
            200 => {}
            503 => refused.push(request),
            other => anyhow::bail!("request {request}: status {other}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "the outage filled the channel: some requests were refused"
    );
    for request in &refused {
        let mut wait = Deadline::new("a refused request to be taken", Duration::from_secs(60));
        while post(addr, &body(*request)).await? != 200 {
            wait.tick(Duration::from_millis(100)).await?;
        }
    }
    let store = s3(&services)?;
    let mut tally = Tally::default();
    let total = REQUESTS * PER_REQUEST;
    let mut wait = Deadline::new("every event in S3", Duration::from_secs(120));
    loop {
        tally.refresh(&store, &prefix).await?;
        if tally.summary(total).lost == 0 {
            break;
        }
        wait.tick(Duration::from_millis(300)).await?;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), run).await???;
    let s = tally.summary(total);
    eprintln!(
        "http backpressure: {REQUESTS} requests, {} refused with 503 first, {} throttled in all, {} events present, {} lost",
        refused.len(),
        metrics.get("source.web.requests_throttled"),
        s.present,
        s.lost
    );
    assert_eq!(s.lost, 0);
    assert!(metrics.get("source.web.requests_throttled") as usize >= refused.len());
    assert!(
        metrics.get("sink.lake.retries") > 0,
        "the store outage reached the sink"
    );
    Ok(())
}
