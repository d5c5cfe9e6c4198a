//! `hostile`: a test-only interceptor that tries to get out of its sandbox,
//! so the sandbox tests can check against a real component that everything
//! not granted is denied. It exists only for those tests: never deploy it.
//!
//! Once per batch (in its prepare function) it tries, with Rust's standard
//! library on `wasm32-wasip2`, to:
//!
//! | header | attempt |
//! |---|---|
//! | `hostile.fs` | read `/etc/passwd` and the file `file` |
//! | `hostile.dir` | list the directory `/` |
//! | `hostile.tcp` | open a TCP connection to `tcp` and write `hostile\n` to it |
//! | `hostile.dns` | resolve the host name `hostname` |
//! | `hostile.env` | read the environment variables `HOME`, `PATH` and `env`, and count all visible ones |
//! | `hostile.clock` | read the wall clock (reported as the year) |
//! | `hostile.lookup` | look up `lookup_key` in the lookup table `lookup_table` |
//!
//! and writes the result of each to every event of the batch as that
//! header: `allowed: <what it got>` if the attempt (or, for `hostile.fs` and
//! `hostile.env`, any of its parts) succeeded, otherwise `denied: <error>`,
//! whatever the reason (an error from the sandbox or from the system).
//! Values are at most [`MAX_VALUE`] bytes. Each event is then kept,
//! modified. The plugin never panics: every failure is a header value.
//! Without its prepare function (a native test calling the plugin function
//! alone) it makes the attempts only once per instance, on the first event.
//!
//! # Configuration
//!
//! ```toml
//! [plugins.hostile]
//! type = "interceptor"
//! team = "intruders"
//! path = "hostile.wasm"
//! config = { file = "/tmp/secret.txt", tcp = "127.0.0.1:9092", hostname = "localhost", env = "AWS_SECRET_ACCESS_KEY", lookup_table = "payroll", lookup_key = "alice" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `file` | string | none | A file to read besides `/etc/passwd`. |
//! | `tcp` | string | `"127.0.0.1:9"` | Socket address (`IP:port`) to connect to. |
//! | `hostname` | string | `"localhost"` | Host name to resolve. |
//! | `env` | string | none | An environment variable to read besides `HOME` and `PATH`. |
//! | `lookup_table` | string | `"secrets"` | Lookup table to read, typically another team's. |
//! | `lookup_key` | string | `"key"` | Key to look up in it. |

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome, lookup};

/// Longest header value, in bytes.
pub const MAX_VALUE: usize = 512;

/// Bytes of a file's beginning shown in `hostile.fs`.
const FILE_PREVIEW: usize = 40;

/// See the crate docs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    file: Option<String>,
    tcp: SocketAddr,
    hostname: String,
    env: Option<String>,
    lookup_table: String,
    lookup_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            file: None,
            tcp: SocketAddr::from(([127, 0, 0, 1], 9)),
            hostname: "localhost".into(),
            env: None,
            lookup_table: "secrets".into(),
            lookup_key: "key".into(),
        }
    }
}

thread_local! {
    /// The headers of the current batch, made by [`attempt_all`].
    static RESULTS: RefCell<Vec<(&'static str, String)>> = const { RefCell::new(Vec::new()) };
}

/// Once per batch: makes every attempt and keeps the headers for
/// [`hostile`].
pub fn attempt_all(_events: &[Event]) -> Result<(), Error> {
    let config: &Config = sluice_guest::config()?;
    let results = vec![
        ("hostile.fs", bounded(read_files(config))),
        ("hostile.dir", bounded(list_root())),
        ("hostile.tcp", bounded(connect(config))),
        ("hostile.dns", bounded(resolve(config))),
        ("hostile.env", bounded(read_env(config))),
        ("hostile.clock", bounded(read_clock())),
        ("hostile.lookup", bounded(read_lookup(config))),
    ];
    RESULTS.with(|r| *r.borrow_mut() = results);
    Ok(())
}

/// Writes the batch's results as headers; see the crate docs.
#[sluice_guest::interceptor(prepare = attempt_all)]
pub fn hostile(event: &mut Event) -> Result<Outcome, Error> {
    if RESULTS.with(|r| r.borrow().is_empty()) {
        attempt_all(&[])?;
    }
    RESULTS.with(|r| {
        for (name, value) in r.borrow().iter() {
            event.set_header(name, value.as_str());
        }
    });
    Ok(Outcome::Keep)
}

/// What one attempt got: `Ok` is shown as `allowed: ...`, `Err` as
/// `denied: ...`.
type Attempt = Result<String, String>;

/// The header value of `attempt`, cut to [`MAX_VALUE`] bytes.
fn bounded(attempt: Attempt) -> String {
    let mut value = match attempt {
        Ok(got) => format!("allowed: {got}"),
        Err(error) => format!("denied: {error}"),
    };
    if value.len() > MAX_VALUE {
        let mut end = MAX_VALUE - 3;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        value.push_str("...");
    }
    value
}

/// `Ok` if any part succeeded; every part is listed either way.
fn any_of(parts: Vec<Attempt>) -> Attempt {
    let allowed = parts.iter().any(Result::is_ok);
    let text = parts
        .into_iter()
        .map(|p| p.unwrap_or_else(|e| e))
        .collect::<Vec<_>>()
        .join("; ");
    if allowed { Ok(text) } else { Err(text) }
}

fn read_files(config: &Config) -> Attempt {
    let mut paths = vec!["/etc/passwd"];
    paths.extend(config.file.as_deref());
    any_of(paths.into_iter().map(read_file).collect())
}

fn read_file(path: &str) -> Attempt {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    let preview = String::from_utf8_lossy(&bytes[..bytes.len().min(FILE_PREVIEW)]);
    Ok(format!(
        "{path}: {} bytes \"{}\"",
        bytes.len(),
        preview.escape_debug()
    ))
}

fn list_root() -> Attempt {
    let entries = std::fs::read_dir("/").map_err(|e| format!("/: {e}"))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let shown = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!("/: {} entries: {shown}", names.len()))
}

fn connect(config: &Config) -> Attempt {
    let addr = config.tcp;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    match stream.write_all(b"hostile\n") {
        Ok(()) => Ok(format!("connected to {addr}, wrote 8 bytes")),
        Err(e) => Ok(format!("connected to {addr}, write failed: {e}")),
    }
}

fn resolve(config: &Config) -> Attempt {
    let host = config.hostname.as_str();
    let addrs = (host, 80)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?;
    let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
    if ips.is_empty() {
        return Err(format!("{host}: no addresses"));
    }
    Ok(format!("{host} -> {}", ips.join(", ")))
}

fn read_env(config: &Config) -> Attempt {
    let mut names = vec!["HOME", "PATH"];
    names.extend(config.env.as_deref());
    let mut parts: Vec<Attempt> = names
        .into_iter()
        .map(|name| match std::env::var_os(name) {
            Some(value) => Ok(format!("{name}={}", value.to_string_lossy())),
            None => Err(format!("{name}: not set")),
        })
        .collect();
    let visible = std::env::vars_os().count();
    let count = format!("{visible} variables visible");
    parts.push(if visible > 0 { Ok(count) } else { Err(count) });
    any_of(parts)
}

fn read_clock() -> Attempt {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock reads before 1970: {e}"))?;
    let seconds = since.as_secs();
    Ok(format!(
        "year {} ({seconds} s since the Unix epoch)",
        year_of(seconds)
    ))
}

/// The (proleptic Gregorian) year of a Unix time.
fn year_of(seconds: u64) -> i64 {
    // Howard Hinnant's civil_from_days.
    let z = (seconds / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

fn read_lookup(config: &Config) -> Attempt {
    let (table, key) = (&config.lookup_table, &config.lookup_key);
    match lookup::get(table, key) {
        Ok(Some(value)) => {
            let mut got = String::new();
            let _ = write!(got, "{table}[{key}] = {value}");
            Ok(got)
        }
        Ok(None) => Ok(format!("{table}: no key `{key}`")),
        Err(e) => Err(e.into_message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent, TestOutput};
    use sluice_guest::with_prepare;

    const HEADERS: [&str; 7] = [
        "hostile.fs",
        "hostile.dir",
        "hostile.tcp",
        "hostile.dns",
        "hostile.env",
        "hostile.clock",
        "hostile.lookup",
    ];

    fn run(config: &str) -> Vec<TestOutput> {
        testing::set_config(config);
        testing::run(
            with_prepare(attempt_all, hostile),
            &[TestEvent::new("a"), TestEvent::new("b")],
        )
    }

    fn header<'a>(out: &'a TestOutput, name: &str) -> &'a str {
        out.event
            .header_str(name)
            .unwrap_or_else(|| panic!("no header {name}"))
    }

    fn check_shape(out: &[TestOutput]) {
        for o in out {
            assert_eq!(o.outcome, Outcome::Keep);
            assert!(o.modified);
            for name in HEADERS {
                let v = header(o, name);
                assert!(
                    v.starts_with("allowed: ") || v.starts_with("denied: "),
                    "{name}: {v}"
                );
                assert!(v.len() <= MAX_VALUE, "{name}: {v}");
            }
        }
        for name in HEADERS {
            assert_eq!(
                header(&out[0], name),
                header(&out[1], name),
                "once per batch"
            );
        }
    }

    /// Natively nothing is sandboxed: what is there is allowed.
    #[test]
    fn reports_what_an_unsandboxed_run_gets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let secret = std::env::temp_dir().join(format!("hostile-test-{}", std::process::id()));
        std::fs::write(&secret, "the secret\n").unwrap();
        testing::set_lookup("payroll", [("alice", "100")]);
        let out = run(&format!(
            r#"{{"file": {:?}, "tcp": "127.0.0.1:{port}", "env": "SLUICE_HOSTILE_UNSET", "lookup_table": "payroll", "lookup_key": "alice"}}"#,
            secret.display().to_string()
        ));
        let _ = std::fs::remove_file(&secret);
        check_shape(&out);
        let fs = header(&out[0], "hostile.fs");
        assert!(fs.starts_with("allowed: "), "{fs}");
        assert!(fs.contains("11 bytes \"the secret\\n\""), "{fs}");
        let tcp = header(&out[0], "hostile.tcp");
        assert_eq!(
            tcp,
            format!("allowed: connected to 127.0.0.1:{port}, wrote 8 bytes")
        );
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hostile\n");
        let env = header(&out[0], "hostile.env");
        assert!(env.starts_with("allowed: "), "{env}");
        assert!(env.contains("SLUICE_HOSTILE_UNSET: not set"), "{env}");
        let clock = header(&out[0], "hostile.clock");
        let year: i64 = clock["allowed: year ".len()..][..4].parse().unwrap();
        assert!(year >= 2025, "{clock}");
        assert_eq!(
            header(&out[0], "hostile.lookup"),
            "allowed: payroll[alice] = 100"
        );
        assert!(header(&out[0], "hostile.dir").starts_with("allowed: /: "));
    }

    #[test]
    fn failures_are_reported_not_panicked() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = run(&format!(
            r#"{{"file": "/", "tcp": "127.0.0.1:{closed}", "hostname": "no-such-host.invalid"}}"#
        ));
        check_shape(&out);
        let tcp = header(&out[0], "hostile.tcp");
        assert!(
            tcp.starts_with(&format!("denied: 127.0.0.1:{closed}: ")),
            "{tcp}"
        );
        assert!(header(&out[0], "hostile.dns").starts_with("denied: no-such-host.invalid: "));
        assert_eq!(
            header(&out[0], "hostile.lookup"),
            "denied: lookup table `secrets` denied: no table of this name is granted to this plugin's team"
        );
    }

    #[test]
    fn works_without_the_prepare_function() {
        testing::set_config("{}");
        let out = testing::run(hostile, &[TestEvent::new("a"), TestEvent::new("b")]);
        check_shape(&out);
    }

    #[test]
    fn values_are_bounded() {
        let long = "é".repeat(MAX_VALUE);
        let v = bounded(Ok(long));
        assert!(v.len() <= MAX_VALUE && v.ends_with("..."), "{}", v.len());
        assert_eq!(bounded(Err("x".into())), "denied: x");
    }

    #[test]
    fn years() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(951_782_400), 2000); // 2000-02-29
        assert_eq!(year_of(1_735_689_599), 2024); // 2024-12-31 23:59:59
        assert_eq!(year_of(1_735_689_600), 2025);
    }

    #[test]
    fn bad_config_fails_the_batch() {
        testing::set_config(r#"{"tcp": "localhost"}"#);
        let err = testing::try_run(with_prepare(attempt_all, hostile), &[TestEvent::new("a")])
            .unwrap_err();
        assert!(
            err.message().starts_with("invalid plugin config: tcp: "),
            "{err}"
        );
        testing::set_config(r#"{"nope": 1}"#);
        assert!(testing::try_run(hostile, &[TestEvent::new("a")]).is_err());
    }
}
