//! `{{name}}`: a Sluice interceptor plugin (Rust).
//!
//! Adds the header `processed-by: {{name}}` to every event and drops events
//! whose body is exactly `drop me`. Replace [`process`] with your own logic.
//!
//! Build the component with `./build.sh` (writes `{{name}}.wasm`), unit-test
//! natively with `cargo test`, and check the component against the golden
//! file with
//! `sluice plugin test {{name}}.wasm --config test/config.toml --input test/input.jsonl --expected test/expected.jsonl`.

use sluice_guest::{Error, Event, Outcome};

/// Called once per event of every batch.
///
/// Return `Outcome::Keep` to pass the event on (with any changes made through
/// its setters), `Outcome::Drop` to discard it, or
/// `Outcome::dead_letter("reason")` for an event you cannot handle. Returning
/// `Err` fails the whole batch (for example on an invalid configuration: read
/// it with `sluice_guest::config::<YourConfig>()?`).
#[sluice_guest::interceptor]
pub fn process(event: &mut Event) -> Result<Outcome, Error> {
    if event.body() == b"drop me" {
        return Ok(Outcome::Drop);
    }
    event.set_header("processed-by", "{{name}}");
    Ok(Outcome::Keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent};

    #[test]
    fn tags_events_and_drops_drop_me() {
        let out = testing::run(process, &[TestEvent::new("hello"), TestEvent::new("drop me")]);
        assert_eq!(out[0].outcome, Outcome::Keep);
        assert_eq!(out[0].event.header_str("processed-by"), Some("{{name}}"));
        assert_eq!(out[1].outcome, Outcome::Drop);
    }
}
