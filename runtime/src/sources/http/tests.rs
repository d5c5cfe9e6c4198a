//! The `http` source over real sockets on 127.0.0.1: answers only after
//! delivery, backpressure (503 then delivered on retry), every error
//! answer, Flume's JSON format, and HTTPS.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    rx: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
    metrics: Arc<Metrics>,
}

async fn start(extra: &str, capacity: usize) -> Server {
    let mut config: HttpSourceConfig = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\npath = \"/events\"\nbackpressure_wait = \"200ms\"\n{extra}"
    ))
    .unwrap();
    config.validate().unwrap();
    let metrics = Metrics::new();
    let ctx = SourceContext {
        name: "intake".into(),
        metrics: metrics.clone(),
        shutdown: CancellationToken::new(),
        embedded_bootstrap: None,
        state_dir: std::env::temp_dir(),
    };
    let shutdown = ctx.shutdown.clone();
    let (tx, rx) = mpsc::channel(capacity);
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(config, tx, ctx, Some(bound_tx)));
    let addr = timeout(WAIT, bound).await.unwrap().unwrap();
    Server {
        addr,
        rx,
        shutdown,
        task,
        metrics,
    }
}

/// A raw HTTP/1.1 response: status, headers (lower-case names), body.
type Answer = (u16, Vec<(String, String)>, String);

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&request(method, path, headers, body))
        .await
        .unwrap();
    let mut raw = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse(&raw)
}

async fn post(addr: SocketAddr, content_type: &str, body: &str) -> Answer {
    send(
        addr,
        "POST",
        "/events",
        &[("Content-Type", content_type)],
        body.as_bytes(),
    )
    .await
}

fn bodies(batch: &Batch) -> Vec<String> {
    batch
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(e.body()).into_owned())
        .collect()
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        drop(self.rx);
        timeout(WAIT, self.task).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn answers_200_only_once_the_batch_is_delivered() {
    let mut s = start("", 4).await;
    let client = tokio::spawn(post(
        s.addr,
        "application/x-ndjson",
        "{\"n\":1}\n{\"n\":2}\n",
    ));
    let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    assert_eq!(bodies(&batch), ["{\"n\":1}", "{\"n\":2}"]);
    // Not answered while the channel holds the batch unacknowledged.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!client.is_finished(), "answered before delivery");
    batch.release();
    let (status, _, body) = timeout(WAIT, client).await.unwrap().unwrap();
    assert_eq!((status, body.trim()), (200, "{\"accepted\":2}"));
    // A batch a channel fails is answered 500: the client sends it again.
    let client = tokio::spawn(post(s.addr, "text/plain", "x\n"));
    let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    batch.ack.fail();
    drop(batch);
    assert_eq!(timeout(WAIT, client).await.unwrap().unwrap().0, 500);
    assert_eq!(s.metrics.get("source.intake.undelivered_batches"), 1);
    assert_eq!(s.metrics.get("source.intake.events"), 3);
    s.stop().await;
}

#[tokio::test]
async fn a_full_pipeline_answers_503_and_everything_resent_is_delivered() {
    let mut s = start("", 1).await;
    let addr = s.addr;
    // The channel takes one batch; nobody drains it for now.
    let first = tokio::spawn(post(s.addr, "text/plain", "a1\na2\n"));
    let metrics = s.metrics.clone();
    timeout(WAIT, async {
        while metrics.get("source.intake.events") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let mut answers = Vec::new();
    for i in 0..3 {
        let body = format!("b{i}\n");
        answers.push(post(s.addr, "text/plain", &body).await);
    }
    for (status, headers, _) in &answers {
        assert_eq!(*status, 503);
        assert!(
            headers.iter().any(|(k, v)| k == "retry-after" && v == "1"),
            "{headers:?}"
        );
    }
    assert_eq!(s.metrics.get("source.intake.requests_throttled"), 3);
    // The sink recovers: the pipeline drains, the clients send again.
    let drained = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 5 {
            let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
            got.extend(bodies(&batch));
            batch.release();
        }
        (got, s)
    });
    for i in 0..3 {
        let (status, _, _) = post(addr, "text/plain", &format!("b{i}\n")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(timeout(WAIT, first).await.unwrap().unwrap().0, 200);
    let (mut got, s) = timeout(WAIT, drained).await.unwrap().unwrap();
    got.sort();
    assert_eq!(got, ["a1", "a2", "b0", "b1", "b2"]);
    s.stop().await;
}

/// Clients past `max_connections` wait in the kernel's accept queue, so a
/// burst of them has to fit there. With the standard library's queue of
/// 128, a burst arriving while every slot was busy had its connections
/// dropped or, through SYN cookies, reset.
#[tokio::test]
async fn a_burst_of_clients_waits_in_the_listen_queue_while_every_slot_is_busy() {
    let mut s = start("max_connections = 1", 1024).await;
    let addr = s.addr;
    // One request holds the only slot: its batch is not released yet.
    let first = tokio::spawn(post(addr, "text/plain", "first\n"));
    let held = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    // The kernel caps any queue at net.core.somaxconn.
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(4096);
    let burst = 400.min(cap - 1);
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..burst {
        let connected = connected.clone();
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            connected.fetch_add(1, Ordering::Relaxed);
            let body = format!("e{i}\n");
            let req = request("POST", "/events", &[], body.as_bytes());
            stream.write_all(&req).await.unwrap();
            let mut raw = Vec::new();
            timeout(WAIT, stream.read_to_end(&mut raw))
                .await
                .unwrap()
                .unwrap();
            parse(&raw).0
        });
    }
    // Every client is connected, though none can be accepted yet.
    let what = format!("all {burst} clients to connect while the only slot is busy");
    crate::wait::until(&what, WAIT, || connected.load(Ordering::Relaxed) >= burst).await;
    held.release();
    let drained = tokio::spawn(async move {
        let mut got = 0;
        while got < burst {
            let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
            got += batch.events.len();
            batch.release();
        }
        s
    });
    assert_eq!(timeout(WAIT, first).await.unwrap().unwrap().0, 200);
    while let Some(status) = timeout(WAIT, clients.join_next()).await.unwrap() {
        assert_eq!(status.unwrap(), 200);
    }
    let s = timeout(WAIT, drained).await.unwrap().unwrap();
    assert_eq!(s.metrics.get("source.intake.events"), burst as u64 + 1);
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_status_and_the_reason() {
    let mut s = start("max_body_bytes = \"64B\"\nformat = \"ndjson\"", 4).await;
    let big = "x".repeat(100);
    assert_eq!(post(s.addr, "text/plain", &big).await.0, 413);
    let (status, _, why) = post(s.addr, "text/plain", "{\"ok\":1}\n{oops\n").await;
    assert_eq!(status, 400);
    assert!(why.starts_with("line 2: not JSON"), "{why}");
    assert_eq!(send(s.addr, "POST", "/other", &[], b"x").await.0, 404);
    assert_eq!(send(s.addr, "GET", "/events", &[], b"").await.0, 405);
    assert_eq!(s.metrics.get("source.intake.requests_rejected"), 4);
    assert!(
        timeout(Duration::from_millis(100), s.rx.recv())
            .await
            .is_err(),
        "nothing taken"
    );
    s.stop().await;
}

#[tokio::test]
async fn flume_json_events_keep_their_headers_and_a_token_is_required() {
    // SAFETY: set before the server reads it, by this test only.
    unsafe { std::env::set_var("SLUICE_TEST_HTTP_TOKEN", "s3cret") };
    let mut s = start("token_env = \"SLUICE_TEST_HTTP_TOKEN\"", 4).await;
    let flume = r#"[{"headers": {"host": "web1"}, "body": "hello"}]"#;
    assert_eq!(post(s.addr, "application/json", flume).await.0, 401);
    let addr = s.addr;
    let client = tokio::spawn(async move {
        send(
            addr,
            "POST",
            "/events",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer s3cret"),
            ],
            flume.as_bytes(),
        )
        .await
    });
    let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    let e = batch.events.get(0).unwrap();
    assert_eq!(
        (e.body(), e.header("host")),
        (&b"hello"[..], Some(&b"web1"[..]))
    );
    assert_eq!(e.topic(), "intake");
    batch.release();
    assert_eq!(timeout(WAIT, client).await.unwrap().unwrap().0, 200);
    s.stop().await;
}

#[test]
fn keys_are_checked() {
    let bad = |t: &str| {
        toml::from_str::<HttpSourceConfig>(t)
            .unwrap()
            .validate()
            .unwrap_err()
            .0
    };
    assert_eq!(bad("listen = \"nowhere\""), "listen");
    assert_eq!(bad("listen = \"0.0.0.0:8080\""), "listen");
    assert_eq!(bad("path = \"events\""), "path");
    assert_eq!(bad("tls_cert = \"/x.pem\""), "tls_key");
    assert_eq!(
        bad("tls_cert = \"/nonexistent.pem\"\ntls_key = \"/k.pem\""),
        "tls_cert"
    );
    assert_eq!(
        bad("token_env = \"SLUICE_TEST_UNSET_VARIABLE\""),
        "token_env"
    );
    assert!(toml::from_str::<HttpSourceConfig>("port = 80").is_err());
}

#[tokio::test]
async fn serves_https_with_a_pem_certificate() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut s = start(
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        ),
        4,
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &std::fs::read(&cert).unwrap()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let addr = s.addr;
    let talk = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(&request("POST", "/events", &[], b"secure\n"))
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        parse(&raw)
    });
    let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    assert_eq!(bodies(&batch), ["secure"]);
    batch.release();
    assert_eq!(timeout(WAIT, talk).await.unwrap().unwrap().0, 200);
    // Plain HTTP to the TLS port gets no answer.
    let mut plain = TcpStream::connect(s.addr).await.unwrap();
    plain
        .write_all(&request("POST", "/events", &[], b"x\n"))
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = timeout(WAIT, plain.read_to_end(&mut raw)).await.unwrap();
    assert!(!String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    s.stop().await;
}
