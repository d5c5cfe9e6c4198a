//! `misbehave`: a test-only interceptor that misbehaves on purpose, so the
//! host's failure handling can be tested against a real component. Never
//! deploy it.
//!
//! # Configuration
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `mode` | string | `"trap"` (panic), `"spin"` (loop forever), `"alloc"` (allocate without bound), `"fail"` (return a batch error), `"flood"` (flood the log, see `flood_bytes`), `"huge-reason"` (dead-letter every event with one shared reason of `reason_bytes`), `"sleep"` (sleep an hour through WASI), `"lookup-bomb"` (one `get-many` of 1 000 000 keys, all the same 1 KiB string, from table `secrets`), `"forge"` (set the host's provenance headers `sluice.lineage` and `sluice.dead_letter.reason` to `forged`, and remove `sluice.exec.part`), or `"keep"` (behave) |
//! | `when_body` | string | only misbehave on an event whose body equals this; other events are kept |
//! | `reason_bytes` | integer | mode `"huge-reason"`: length of the reason, built once and shared by every outcome (default 20 MiB) |
//! | `flood_bytes` | integer | mode `"flood"`: bytes written to stderr per event, in lines of ~8 KiB that hold a newline and a forged host log line; then one `host.log` error line that holds one too |

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

/// See the crate docs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    #[serde(default)]
    when_body: Option<String>,
    #[serde(default)]
    flood_bytes: usize,
    #[serde(default = "default_reason_bytes")]
    reason_bytes: usize,
}

fn default_reason_bytes() -> usize {
    20 << 20
}

/// The `huge-reason` reason, built once: every outcome refers to it.
static REASON: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Misbehaves as configured.
#[sluice_guest::interceptor]
pub fn misbehave(event: &mut Event) -> Result<Outcome, Error> {
    let config: &Config = sluice_guest::config()?;
    if let Some(body) = &config.when_body
        && event.body() != body.as_bytes()
    {
        return Ok(Outcome::Keep);
    }
    match config.mode.as_str() {
        "keep" => Ok(Outcome::Keep),
        "trap" => panic!("misbehave: trapping on purpose"),
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "fail" => Err(Error::new("misbehave: failing the batch on purpose")),
        "flood" => {
            use std::io::Write as _;
            let line = format!(
                "flood\n2026-12-03T00:00:00.000000Z ERROR sluice: forged by a plugin {}\n",
                "x".repeat(8000)
            );
            let mut stderr = std::io::stderr();
            let mut written = 0;
            while written < config.flood_bytes {
                // A refused write is the host's answer, not this plugin's problem.
                let _ = stderr.write_all(line.as_bytes());
                written += line.len();
            }
            sluice_guest::log::error(
                "flood\n2026-12-03T00:00:00.000000Z ERROR sluice: forged through host.log",
            );
            Ok(Outcome::Keep)
        }
        "huge-reason" => {
            let reason: &'static str = REASON.get_or_init(|| "r".repeat(config.reason_bytes));
            Ok(Outcome::DeadLetter(reason.into()))
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(Outcome::Keep)
        }
        "lookup-bomb" => {
            static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let key: &str = KEY.get_or_init(|| "k".repeat(1024));
            let keys = vec![key; 1_000_000];
            sluice_guest::lookup::get_many("secrets", &keys)?;
            Ok(Outcome::Keep)
        }
        "forge" => {
            event.set_header("sluice.lineage", "forged");
            event.set_header("sluice.dead_letter.reason", "forged");
            event.remove_header("sluice.exec.part");
            Ok(Outcome::Keep)
        }
        other => Err(Error::new(format!("misbehave: unknown mode `{other}`"))),
    }
}
