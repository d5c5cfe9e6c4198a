//! The `syslog` source over real sockets on 127.0.0.1: both RFCs over TCP
//! (octet counting and newline framing) and UDP, truncation, unparsable
//! messages, the connection limit, backpressure and shutdown.

use std::sync::atomic::AtomicUsize;

use chrono::TimeDelta;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::*;
use crate::metrics::Metrics;
use crate::wait::until;

const WAIT: Duration = Duration::from_secs(20);

struct Running {
    addr: SocketAddr,
    rx: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Running {
    fn get(&self, what: &str) -> u64 {
        self.metrics.get(&format!("source.logs.{what}"))
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let finish = async {
            // The output closes once the source drains its acknowledgements.
            while let Some(batch) = self.rx.recv().await {
                batch.release();
            }
            (&mut self.task).await
        };
        timeout(WAIT, finish).await.unwrap().unwrap().unwrap();
    }
}

async fn start(protocol: &str, extra: &str, capacity: usize) -> Running {
    // Test defaults, which `extra` may override.
    let mut table: toml::Table = toml::from_str(&format!(
        "protocol = \"{protocol}\"\nlisten = \"127.0.0.1:0\"\nbatch_max_wait = \"20ms\""
    ))
    .unwrap();
    table.extend(toml::from_str::<toml::Table>(extra).unwrap());
    let config: SyslogSourceConfig = toml::Value::Table(table).try_into().unwrap();
    config.validate().unwrap();
    let metrics = Metrics::new();
    let ctx = SourceContext {
        name: "logs".into(),
        metrics: metrics.clone(),
        shutdown: CancellationToken::new(),
        embedded_bootstrap: None,
        state_dir: std::env::temp_dir(),
    };
    let shutdown = ctx.shutdown.clone();
    let (tx, rx) = mpsc::channel(capacity);
    let (bound_tx, bound) = oneshot::channel();
    let task = tokio::spawn(run(config, tx, ctx, Some(bound_tx)));
    let addr = timeout(WAIT, bound).await.unwrap().unwrap();
    Running {
        addr,
        rx,
        shutdown,
        task,
        metrics,
    }
}

/// An event as received.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    timestamp: i64,
    offset: i64,
}

/// Receives batches, releasing them, until `n` events came.
async fn receive(rx: &mut mpsc::Receiver<Batch>, n: usize) -> Vec<Got> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        for e in batch.events.iter() {
            assert_eq!((e.topic(), e.partition(), e.key()), ("logs", 0, None));
            out.push(Got {
                body: e.body().to_vec(),
                headers: e
                    .headers()
                    .map(|h| {
                        let (name, value) = h.unwrap();
                        (name.to_owned(), String::from_utf8_lossy(value).into_owned())
                    })
                    .collect(),
                timestamp: e.timestamp(),
                offset: e.offset(),
            });
        }
        batch.release();
    }
    assert_eq!(out.len(), n, "more events than expected");
    out
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// `msg` framed by octet counting.
fn octets(msg: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", msg.len()).into_bytes();
    framed.extend_from_slice(msg);
    framed
}

const RFC5424_EXAMPLE: &[u8] = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
const RFC5424_SD: &str = r#"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 evntslog 8710 ID47 [exampleSDID@32473 iut="3" eventSource="App\]lication"][examplePriority@32473 class="high"] An application event"#;

#[tokio::test]
async fn tcp_messages_of_both_rfcs_and_framings_become_events() {
    let mut s = start("tcp", "", 4).await;
    // An RFC 3164 timestamp an hour ago, to the second, this year.
    let then = Utc::now() - TimeDelta::hours(1);
    let bsd = then.format("%b %e %H:%M:%S").to_string();
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    let peer = client.local_addr().unwrap().to_string();
    let mut stream = octets(RFC5424_EXAMPLE);
    stream.extend_from_slice(format!("<13>{bsd} web-1 sshd[4321]: Accepted key\n").as_bytes());
    stream.extend_from_slice(&octets(RFC5424_SD.as_bytes()));
    stream.extend_from_slice(b"not syslog at all\r\n");
    stream.extend_from_slice(b"<14>1 - - - - - -\x00");
    // Sent in two pieces, the cut inside a message.
    client.write_all(&stream[..40]).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(&stream[40..]).await.unwrap();
    let got = receive(&mut s.rx, 5).await;

    assert_eq!(got[0].body, b"'su root' failed for lonvick on /dev/pts/8");
    assert_eq!(
        got[0].headers,
        headers(&[
            ("syslog.facility", "4"),
            ("syslog.severity", "2"),
            ("syslog.version", "1"),
            ("syslog.timestamp", "2003-10-11T22:14:15.003Z"),
            ("syslog.hostname", "mymachine.example.com"),
            ("syslog.app_name", "su"),
            ("syslog.msg_id", "ID47"),
            ("syslog.peer", &peer),
        ])
    );
    assert_eq!(got[0].timestamp, ms("2003-10-11T22:14:15.003Z"));

    assert_eq!(got[1].body, b"Accepted key");
    assert_eq!(
        got[1].headers,
        headers(&[
            ("syslog.facility", "1"),
            ("syslog.severity", "5"),
            ("syslog.timestamp", &bsd),
            ("syslog.hostname", "web-1"),
            ("syslog.app_name", "sshd"),
            ("syslog.proc_id", "4321"),
            ("syslog.peer", &peer),
        ])
    );
    assert_eq!(got[1].timestamp, then.timestamp() * 1000);

    assert_eq!(got[2].body, b"An application event");
    assert_eq!(
        got[2].headers,
        headers(&[
            ("syslog.facility", "20"),
            ("syslog.severity", "5"),
            ("syslog.version", "1"),
            ("syslog.timestamp", "2003-08-24T05:14:15.000003-07:00"),
            ("syslog.hostname", "192.0.2.1"),
            ("syslog.app_name", "evntslog"),
            ("syslog.proc_id", "8710"),
            ("syslog.msg_id", "ID47"),
            (
                "syslog.structured_data",
                r#"[exampleSDID@32473 iut="3" eventSource="App\]lication"][examplePriority@32473 class="high"]"#
            ),
            ("syslog.peer", &peer),
        ])
    );
    assert_eq!(got[2].timestamp, ms("2003-08-24T12:14:15.000Z"));

    // Kept raw, with the reason, at the time received.
    assert_eq!(got[3].body, b"not syslog at all");
    assert_eq!(
        got[3].headers,
        headers(&[
            ("syslog.peer", &peer),
            ("syslog.invalid", "no <PRI> at the start"),
        ])
    );
    assert!((got[3].timestamp - batcher::now_ms()).abs() < 60_000);

    assert_eq!(got[4].body, b"");
    assert_eq!(
        got[4].headers,
        headers(&[
            ("syslog.facility", "1"),
            ("syslog.severity", "6"),
            ("syslog.version", "1"),
            ("syslog.peer", &peer),
        ])
    );

    assert!(got.windows(2).all(|w| w[1].offset == w[0].offset + 1));
    assert!(
        got[0].offset > 1_600_000_000_000_000,
        "from the start time in µs"
    );
    assert_eq!(s.get("messages"), 5);
    assert_eq!(s.get("messages_invalid"), 1);
    assert_eq!(s.get("messages_truncated"), 0);
    assert_eq!(s.get("connections"), 1);
    assert_eq!(s.get("events"), 5);
    s.stop().await;
}

#[tokio::test]
async fn udp_datagrams_become_events_and_long_ones_are_cut() {
    let mut s = start("udp", "max_message_bytes = 480", 4).await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer = client.local_addr().unwrap().to_string();
    client.send_to(RFC5424_EXAMPLE, s.addr).await.unwrap();
    client
        .send_to(b"<30>Jun  1 01:02:03 host cron: ran\n", s.addr)
        .await
        .unwrap();
    let long = format!("<13>1 - - - - - - {}", "x".repeat(1000));
    client.send_to(long.as_bytes(), s.addr).await.unwrap();
    let got = receive(&mut s.rx, 3).await;
    assert_eq!(got[0].body, b"'su root' failed for lonvick on /dev/pts/8");
    assert_eq!(got[0].headers.len(), 8);
    assert_eq!(got[0].headers[7], ("syslog.peer".into(), peer.clone()));
    assert_eq!(got[1].body, b"ran");
    assert_eq!(
        got[1].headers,
        headers(&[
            ("syslog.facility", "3"),
            ("syslog.severity", "6"),
            ("syslog.timestamp", "Jun  1 01:02:03"),
            ("syslog.hostname", "host"),
            ("syslog.app_name", "cron"),
            ("syslog.peer", &peer),
        ])
    );
    assert_eq!(got[2].body, &long.as_bytes()[18..480]);
    assert_eq!(s.get("messages"), 3);
    assert_eq!(s.get("messages_truncated"), 1);
    s.stop().await;
}

#[tokio::test]
async fn long_tcp_messages_are_cut_to_the_limit_and_the_stream_goes_on() {
    let mut s = start("tcp", "max_message_bytes = 480", 4).await;
    let long = format!("<13>1 - - - - - - {}", "y".repeat(1000));
    let mut stream = octets(long.as_bytes());
    stream.extend_from_slice(long.as_bytes());
    stream.extend_from_slice(b"\n<13>1 - - - - - - after\n");
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    client.write_all(&stream).await.unwrap();
    let got = receive(&mut s.rx, 3).await;
    assert_eq!(got[0].body, &long.as_bytes()[18..480]);
    assert_eq!(got[1].body, &long.as_bytes()[18..480]);
    assert_eq!(got[2].body, b"after");
    assert_eq!(s.get("messages_truncated"), 2);
    s.stop().await;
}

#[tokio::test]
async fn unparsable_messages_are_dropped_and_counted_without_keep_unparsed() {
    let mut s = start("tcp", "keep_unparsed = false\nformat = \"rfc5424\"", 4).await;
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    client
        .write_all(b"garbage\n<13>Oct 11 22:14:15 host su: bsd\n<13>1 - - - - - - fine\n")
        .await
        .unwrap();
    let got = receive(&mut s.rx, 1).await;
    assert_eq!(got[0].body, b"fine");
    assert_eq!(s.get("messages"), 3);
    assert_eq!(s.get("messages_invalid"), 2);
    assert_eq!(s.get("events"), 1);
    s.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_counted() {
    use tokio::io::AsyncReadExt as _;
    let mut s = start("tcp", "max_connections = 1", 4).await;
    let mut first = TcpStream::connect(s.addr).await.unwrap();
    first.write_all(b"<13>1 - - - - - - one\n").await.unwrap();
    assert_eq!(receive(&mut s.rx, 1).await[0].body, b"one");
    let mut second = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, second.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    assert_eq!(s.get("connections_refused"), 1);
    assert_eq!(s.get("connections"), 1);
    first.write_all(b"<13>1 - - - - - - two\n").await.unwrap();
    assert_eq!(receive(&mut s.rx, 1).await[0].body, b"two");
    s.stop().await;
}

/// A pipeline that takes nothing: the source stops reading, the sender
/// blocks, and once the pipeline takes again every message arrives in
/// order.
#[tokio::test]
async fn tcp_backpressure_pauses_reading_and_loses_nothing() {
    // 60 MiB: more than the kernel's socket buffers and the source's queue hold.
    const N: usize = 60_000;
    const LEN: usize = 1024;
    let mut s = start("tcp", "batch_max_events = 100", 1).await;
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let written = written.clone();
        async move {
            let mut group = Vec::with_capacity(64 * LEN);
            for i in 0..N {
                let head = format!("<13>1 - host app - - - {i:08} ");
                group.extend_from_slice(head.as_bytes());
                group.resize(group.len() + LEN - head.len() - 1, b'.');
                group.push(b'\n');
                if (i + 1) % 64 == 0 || i + 1 == N {
                    client.write_all(&group).await.unwrap();
                    group.clear();
                    written.store(i + 1, Ordering::Relaxed);
                }
            }
            client
        }
    });
    // Nothing is received: reading stalls, and so does the sender.
    timeout(WAIT, async {
        loop {
            let (events, sent) = (s.get("events"), written.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(300)).await;
            if sent > 0 && s.get("events") == events && written.load(Ordering::Relaxed) == sent {
                break;
            }
        }
    })
    .await
    .expect("the source and the sender never stalled");
    let paused_at = s.get("events");
    assert!(paused_at < N as u64 / 2, "read on: {paused_at} events");
    assert!(
        written.load(Ordering::Relaxed) < N,
        "the sender never blocked"
    );
    assert!(!writer.is_finished());
    // The pipeline takes again: everything arrives, in order.
    let got = timeout(WAIT * 3, receive(&mut s.rx, N)).await.unwrap();
    for (i, e) in got.iter().enumerate() {
        assert_eq!(&e.body[..8], format!("{i:08}").as_bytes());
        assert_eq!(e.body.len(), LEN - 1 - "<13>1 - host app - - - ".len());
    }
    let client = timeout(WAIT, writer).await.unwrap().unwrap();
    assert_eq!(s.get("messages"), N as u64);
    drop(client);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_hands_on_what_was_read_and_waits_for_acks() {
    use tokio::io::AsyncReadExt as _;
    let mut s = start("tcp", "batch_max_wait = \"1h\"\nbatch_max_events = 1000", 4).await;
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    client
        .write_all(b"<13>1 - - - - - - one\n21 <13>1 - - - - - - two<13>1 - - - - - - partial")
        .await
        .unwrap();
    let metrics = s.metrics.clone();
    until("two messages", WAIT, || {
        metrics.get("source.logs.messages") == 2
    })
    .await;
    s.shutdown.cancel();
    // The open batch is handed on, the partial message with it.
    let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    let bodies: Vec<&[u8]> = batch.events.iter().map(|e| e.body()).collect();
    assert_eq!(bodies, [&b"one"[..], b"two", b"partial"]);
    // The connection is closed, and no new one is taken.
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, client.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    // The source waits for the batch's acknowledgement.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.task.is_finished());
    batch.release();
    timeout(WAIT, &mut s.task).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err());
    assert_eq!(s.get("undelivered_batches"), 0);
}

#[tokio::test]
async fn a_batch_not_delivered_is_counted() {
    let mut s = start("udp", "", 4).await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(b"<13>1 - - - - - - lost", s.addr)
        .await
        .unwrap();
    let batch = timeout(WAIT, s.rx.recv()).await.unwrap().unwrap();
    batch.ack.fail();
    drop(batch);
    let metrics = s.metrics.clone();
    until("an undelivered batch", WAIT, || {
        metrics.get("source.logs.undelivered_batches") == 1
    })
    .await;
    s.stop().await;
}

#[test]
fn the_example_configuration_loads_and_keys_are_checked() {
    let example: toml::Table = toml::from_str(
        r#"
        protocol = "tcp"
        listen = "0.0.0.0:514"
        format = "auto"
        max_message_bytes = "64KiB"
        max_connections = 1024
        keep_unparsed = true
        batch_max_events = 1000
        batch_max_bytes = "16MiB"
        batch_max_wait = "100ms"
        "#,
    )
    .unwrap();
    let source = (TYPE.load)(toml::Value::Table(example)).unwrap();
    assert!(!source.rereads() && !source.positional());
    let config = source
        .as_any()
        .downcast_ref::<SyslogSourceConfig>()
        .unwrap();
    assert_eq!(config.protocol, Protocol::Tcp);
    // Defaults.
    let config: SyslogSourceConfig = toml::from_str("protocol = \"udp\"").unwrap();
    config.validate().unwrap();
    assert_eq!(config.listen, "127.0.0.1:5140");
    assert_eq!(config.format, Format::Auto);
    assert_eq!(config.max_message_bytes, ByteSize(64 << 10));
    assert_eq!(config.max_connections, 1024);
    assert!(config.keep_unparsed);

    let bad = |t: &str| {
        toml::from_str::<SyslogSourceConfig>(&format!("protocol = \"tcp\"\n{t}"))
            .unwrap()
            .validate()
            .unwrap_err()
            .0
    };
    assert_eq!(bad("listen = \"localhost\""), "listen");
    assert_eq!(bad("listen = \"127.0.0.1\""), "listen");
    assert_eq!(bad("max_message_bytes = \"100B\""), "max_message_bytes");
    assert_eq!(bad("max_message_bytes = \"1GiB\""), "max_message_bytes");
    assert_eq!(bad("max_connections = 0"), "max_connections");
    assert_eq!(bad("batch_max_events = 0"), "batch_max_events");
    for wrong in [
        "",
        "protocol = \"sctp\"",
        "protocol = \"tcp\"\nformat = \"rfc9999\"",
        "protocol = \"tcp\"\nport = 514",
    ] {
        assert!(
            toml::from_str::<SyslogSourceConfig>(wrong).is_err(),
            "{wrong}"
        );
    }
}

/// The module docs' example, behind a file channel, loads as a whole
/// configuration; a bad key is reported under the source.
#[test]
fn the_module_example_loads_in_a_configuration() {
    let text = |listen: &str| {
        format!(
            r#"data_dir = "/tmp/sluice-test"

[sources.syslog]
type = "syslog"
protocol = "tcp"
listen = "{listen}"
format = "auto"
max_message_bytes = "64KiB"
max_connections = 1024
keep_unparsed = true
batch_max_events = 1000
batch_max_bytes = "16MiB"
batch_max_wait = "100ms"
channels = ["edge"]

[channels.edge]
type = "file"

[sinks.out]
type = "null"
channel = "edge"
"#
        )
    };
    let parse =
        |text: &str| crate::config::parse(std::path::Path::new("conf/test.toml"), text, |_| None);
    parse(&text("0.0.0.0:514")).unwrap();
    let errors = parse(&text("localhost:514")).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "sources.syslog.listen");
}
