//! The admin endpoint of a running agent: probes, Prometheus metrics read by
//! a real Prometheus server, live tap, JSON logs.
//!
//! The agent runs the quickstart's fraud pipeline on its embedded broker,
//! with a feed long enough to outlast the test, and is stopped with SIGTERM
//! as an orchestrator would.

mod util;

use util::{Log, Process};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "t0ken-for-tests";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The quickstart with absolute paths and an `[admin]` section.
fn config(dir: &Path) -> PathBuf {
    let conf = repo().join("conf");
    let text = std::fs::read_to_string(conf.join("quickstart.toml"))
        .unwrap()
        .replace(
            "plugin_dir = \"../target/wasm32-wasip2/plugin\"",
            &format!(
                "plugin_dir = \"{}\"",
                repo().join("target/wasm32-wasip2/plugin").display()
            ),
        )
        .replace(
            "path = \"data/",
            &format!("path = \"{}/data/", conf.display()),
        );
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let text = format!("{text}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n");
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running agent; SIGKILLed if the test fails before stopping it.
struct Agent {
    child: Process,
    log: Log,
}

impl Agent {
    fn start(config: &Path, out: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info,sluice::admin=debug",
            ])
            .arg("run")
            .arg(config)
            .env("SLUICE_OUT", out)
            .env("SLUICE_DEMO_EVENTS", "10000000")
            .env("SLUICE_DEMO_RATE", "2000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::follow(child.stderr.take().unwrap());
        Self {
            child: Process(child),
            log,
        }
    }
}

/// One HTTP/1.1 GET; (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the first sample of `family` whose labels contain `labels`.
fn sample(metrics: &str, family: &str, labels: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_agent_is_probed_scraped_and_tapped() {
    util::plugin("mask");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut agent = Agent::start(&config, dir.path());

    // JSON logs: the endpoint names its address (port 0 was asked for).
    let addr = agent.log.wait_for("naming the admin address", |line| {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        let fields = &v["fields"];
        (fields["message"]
            .as_str()?
            .starts_with("admin endpoint listening"))
        .then(|| fields["address"].as_str().unwrap().to_owned())
    });

    let (code, body) = get(&addr, "/health", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\": \"ok\""), "{body}");

    // Ready once the plugins are loaded and the source joined its group.
    let ready = wait_until("/ready", Duration::from_secs(120), || {
        let (code, body) = get(&addr, "/ready", None);
        (code == 200).then_some(body)
    });
    assert!(ready.contains("\"ready\": true"), "{ready}");

    // /metrics needs the token.
    assert_eq!(get(&addr, "/metrics", None).0, 401);
    assert_eq!(get(&addr, "/metrics", Some("wrong")).0, 401);
    let metrics = wait_until("events counted", Duration::from_secs(60), || {
        let (code, body) = get(&addr, "/metrics", Some(TOKEN));
        assert_eq!(code, 200, "{body}");
        let read = sample(
            &body,
            "sluice_source_events_total",
            "component=\"transactions\"",
        )?;
        let delivered = sample(
            &body,
            "sluice_source_delivery_seconds_count",
            "component=\"transactions\"",
        )?;
        (read > 0.0 && delivered > 0.0).then_some(body)
    });
    for (family, labels) in [
        (
            "sluice_source_events_total",
            "type=\"kafka\",team=\"fraud\"",
        ),
        (
            "sluice_plugin_batch_seconds_bucket",
            "component=\"mask\",type=\"interceptor\",team=\"fraud\",le=\"+Inf\"",
        ),
        (
            "sluice_source_partition_lag_messages",
            "topic=\"card-transactions\",partition=\"0\"",
        ),
        (
            "sluice_source_assigned_partitions",
            "component=\"transactions\"",
        ),
        ("sluice_channel_capacity_events", "component=\"lake\""),
        (
            "sluice_sink_open_files",
            "component=\"lake\",type=\"object_store\"",
        ),
    ] {
        assert!(
            sample(&metrics, family, labels).is_some(),
            "no {family}{{{labels}}} in:\n{metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "sluice_source_assigned_partitions",
            "component=\"transactions\""
        ),
        Some(3.0)
    );
    assert!(metrics.contains("\nsluice_up 1\n"), "{metrics}");
    for line in metrics.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(
            !line.ends_with("Sluice metric."),
            "a family without its help text: {line}"
        );
    }

    // Tap: after `mask`, five events, card numbers masked.
    assert_eq!(get(&addr, "/tap?point=plugin:mask", None).0, 401);
    let (code, tapped) = get(
        &addr,
        "/tap?point=plugin%3Amask&limit=5&seconds=30",
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{tapped}");
    let lines: Vec<serde_json::Value> = tapped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "{tapped}");
    for line in &lines {
        assert_eq!(line["point"], "plugin:mask");
        assert_eq!(line["topic"], "card-transactions");
        let body: serde_json::Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        let card = body["card"].as_str().unwrap();
        assert!(
            card.starts_with("************"),
            "masked after `mask`: {card}"
        );
    }
    // A sink's input is its channel's.
    let (code, lake) = get(&addr, "/tap?point=sink:lake&limit=2", Some(TOKEN));
    assert_eq!((code, lake.lines().count()), (200, 2), "{lake}");
    let (code, listing) = get(&addr, "/tap?point=plugin:nope", Some(TOKEN));
    assert_eq!(code, 404, "{listing}");
    assert!(
        listing.contains("source:transactions"),
        "the points are listed: {listing}"
    );

    // `sluice tap`, as an operator runs it: the agent's config gives the
    // endpoint (port 0: the address it recorded) and the token.
    let tapped = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "tap",
            "--point",
            "plugin:mask",
            "--limit",
            "3",
            "--seconds",
            "30",
        ])
        .arg(&config)
        .env("SLUICE_OUT", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tapped.stdout).into_owned();
    assert!(
        tapped.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&tapped.stderr)
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert!(body["card"].as_str().unwrap().starts_with("****"), "{line}");
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["tap", "--point", "plugin:nope"])
        .arg(&config)
        .env("SLUICE_OUT", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && err.contains("no tap point `plugin:nope`"),
        "{err}"
    );

    scrape_with_prometheus(dir.path(), &addr);

    watch_with_top(&config, dir.path());

    // SIGHUP reloads the configuration; the file is unchanged, so nothing
    // is rebuilt.
    let pid = agent.child.0.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let message = |line: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v["fields"]["message"].as_str().map(str::to_owned)
    };
    agent.log.wait_for("the SIGHUP", |l| {
        message(l).filter(|m| m.starts_with("SIGHUP"))
    });
    agent.log.wait_for("the unchanged reload", |l| {
        message(l).filter(|m| m.contains("no component did"))
    });
    let (_, metrics) = get(&addr, "/metrics", Some(TOKEN));
    assert_eq!(
        sample(
            &metrics,
            "sluice_source_starts_total",
            "component=\"transactions\""
        ),
        Some(1.0)
    );

    // SIGTERM, as an orchestrator stops a pod: a graceful, successful exit.
    let status = agent
        .child
        .terminate(&mut agent.log, Duration::from_secs(60));
    assert!(status.success(), "{status}; log:\n{}", agent.log.text());
    for line in &agent.log.seen {
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escapes in a log that is no terminal: {line}"
        );
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// Prometheus, from the machine's package, scrapes the agent every second
/// with the bearer token and is asked for the rate of events read.
fn scrape_with_prometheus(dir: &Path, agent: &str) {
    let Some(prometheus) = which("prometheus") else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_SERVICES").is_none(),
            "prometheus is not installed (scripts/services.sh install)"
        );
        eprintln!("skipping the Prometheus scrape: prometheus is not installed");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{agent}']\n",
            dir.join("token").display()
        ),
    )
    .unwrap();
    let server = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Process(server);
    let api = format!("127.0.0.1:{port}");
    let query = |q: &str| -> Option<f64> {
        let (code, body) =
            std::panic::catch_unwind(|| get(&api, &format!("/api/v1/query?query={q}"), None))
                .ok()?;
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    // up == 1: the scrape (with the token) succeeds.
    wait_until(
        "Prometheus scraping the agent",
        Duration::from_secs(60),
        || (query("up%7Bjob%3D%22sluice%22%7D")? == 1.0).then_some(()),
    );
    // The feed runs at 2000 events/s: the rate Prometheus computes is about that.
    let rate = wait_until("a rate of events read", Duration::from_secs(60), || {
        query("sum(rate(sluice_source_events_total%5B5s%5D))").filter(|r| *r > 0.0)
    });
    assert!((100.0..100_000.0).contains(&rate), "rate {rate}");
    let p99 = wait_until(
        "a delivery latency quantile",
        Duration::from_secs(60),
        || {
            query("histogram_quantile(0.99%2Csum%20by%20(le)(rate(sluice_source_delivery_seconds_bucket%5B10s%5D)))")
            .filter(|v| v.is_finite())
        },
    );
    assert!(p99 > 0.0 && p99 < 60.0, "p99 delivery {p99} s");
}

/// `sluice top` on the agent: once to stdout, then live in a tmux session
/// (its own server socket), quit with Ctrl-C.
fn watch_with_top(config: &Path, out: &Path) {
    let once = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["top", "--once", "--interval", "1s"])
        .arg(config)
        .env("SLUICE_OUT", out)
        .output()
        .unwrap();
    let view = String::from_utf8_lossy(&once.stdout).into_owned();
    assert!(
        once.status.success(),
        "{view}{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(view.contains("running, ready"), "{view}");
    let row = |view: &str, name: &str| -> Vec<String> {
        view.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in:\n{view}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // transactions kafka fraud EVENTS/S ...: read at ~2000 events/s.
    let source = row(&view, "transactions");
    let rate: f64 = source[3].trim_end_matches('k').parse().unwrap();
    assert!(rate > 0.0, "{view}");
    // mask fraud GEN DIGEST ...: the running version.
    let mask = row(&view, "mask");
    assert_eq!(mask[2], "1", "{view}");
    assert!(
        mask[3].len() == 12 && mask[3].bytes().all(|b| b.is_ascii_hexdigit()),
        "{view}"
    );

    let Some(tmux) = which("tmux") else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_SERVICES").is_none(),
            "tmux is not installed (scripts/services.sh install)"
        );
        return;
    };
    let socket = format!("sluice-top-{}", std::process::id());
    let tmux_cmd = |args: &[&str]| {
        Command::new(&tmux)
            .args(["-L", &socket])
            .args(args)
            .output()
            .unwrap()
    };
    let command = format!(
        "{} top --interval 1s {}",
        env!("CARGO_BIN_EXE_sluice"),
        config.display()
    );
    let started = tmux_cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "50",
        "-e",
        &format!("SLUICE_OUT={}", out.display()),
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    struct KillServer<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for KillServer<'_> {
        fn drop(&mut self) {
            (self.0)(&["kill-server"]);
        }
    }
    let _server = KillServer(&tmux_cmd);
    let screen = wait_until("top's live view", Duration::from_secs(30), || {
        let pane = String::from_utf8_lossy(&tmux_cmd(&["capture-pane", "-p", "-t", "top"]).stdout)
            .into_owned();
        let live = pane.lines().any(|l| {
            l.starts_with("transactions ")
                && l.split_whitespace()
                    .nth(3)
                    .is_some_and(|r| r != "-" && r != "0")
        });
        (live && pane.contains("PLUGIN") && pane.contains("SINK")).then_some(pane)
    });
    assert!(screen.contains("running, ready"), "{screen}");
    // Ctrl-C quits and gives the terminal back.
    tmux_cmd(&["send-keys", "-t", "top", "C-c"]);
    wait_until("top to quit", Duration::from_secs(10), || {
        (!tmux_cmd(&["has-session", "-t", "top"]).status.success()).then_some(())
    });
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
