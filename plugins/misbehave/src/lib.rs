//! `misbehave`: a test-only interceptor that misbehaves on purpose, so the
//! host's failure handling can be tested against a real component. Never
//! deploy it.
//!
//! # Configuration
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `mode` | string | `"trap"` (panic), `"spin"` (loop forever), `"alloc"` (allocate without bound), `"fail"` (return a batch error), or `"keep"` (behave) |
//! | `when_body` | string | only misbehave on an event whose body equals this; other events are kept |

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

/// See the crate docs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    #[serde(default)]
    when_body: Option<String>,
}

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
        other => Err(Error::new(format!("misbehave: unknown mode `{other}`"))),
    }
}
