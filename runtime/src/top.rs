//! `sluice top`: a live terminal view of a running agent, read from its
//! admin endpoint (`/metrics`, `/ready`) and, when the agent's
//! configuration is given, its plugin status file (digests and versions).
//!
//! Every `--interval` it scrapes the endpoint and shows, per component,
//! rates computed from the change of its counters since the last scrape:
//! sources (events/s, lag, errors, dead letters, paused), plugins (batches/s,
//! mean batch time, failures, version), channels (fill) and sinks
//! (events/s, files, errors, failing). It draws on the terminal's alternate
//! screen and restores it on Ctrl-C; `--once` prints one snapshot (after
//! two scrapes, so rates are known) and exits, for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::remote::{Target, get};

/// A series' labels.
type Labels = BTreeMap<String, String>;

/// Every sample of a scrape: family → (labels, value).
type Samples = BTreeMap<String, Vec<(Labels, f64)>>;

/// One scrape: every sample by family, then labels.
#[derive(Debug, Default, Clone)]
struct Scrape {
    at: Option<Instant>,
    samples: Samples,
    ready: Option<bool>,
}

impl Scrape {
    /// The value of `family` for `component` (summed over other labels).
    fn get(&self, family: &str, component: &str) -> Option<f64> {
        let rows = self.samples.get(family)?;
        let mut found = None;
        for (labels, v) in rows {
            if labels.get("component").map(String::as_str) == Some(component) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// Components having `family`, with their `type` and `team` labels.
    fn components(&self, family: &str) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for (labels, _) in self.samples.get(family).into_iter().flatten() {
            if let Some(c) = labels.get("component") {
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                out.insert(c.clone(), (label("type"), label("team")));
            }
        }
        out
    }

    fn plain(&self, family: &str) -> Option<f64> {
        self.samples.get(family)?.first().map(|(_, v)| *v)
    }
}

/// Parses Prometheus' text format (what `/metrics` answers).
fn parse(text: &str) -> Samples {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        out.entry(name.to_owned())
            .or_default()
            .push((labels, value));
    }
    out
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

fn scrape(target: &Target) -> Result<Scrape> {
    let (status, body) = get(target, "/metrics")?;
    match status {
        200 => {}
        401 => bail!("the admin endpoint wants a token: give --token-file, or the agent's config"),
        other => bail!("/metrics answered {other}"),
    }
    let ready = get(target, "/ready").ok().map(|(s, _)| s == 200);
    Ok(Scrape {
        at: Some(Instant::now()),
        samples: parse(&body),
        ready,
    })
}

/// Plugin name → (digest prefix, generation) from the status file.
fn plugin_versions(file: Option<&Path>) -> BTreeMap<String, (String, u64)> {
    let Some(file) = file else {
        return BTreeMap::new();
    };
    crate::plugin::registry::read_status(file)
        .map(|rows| {
            rows.into_iter()
                .map(|r| {
                    (
                        r.plugin,
                        (r.digest.chars().take(12).collect(), r.generation),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The view of `now`, with rates against `before`.
fn render(target: &Target, before: &Scrape, now: &Scrape, width: usize) -> String {
    let dt = match (before.at, now.at) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = |family: &str, c: &str| -> String {
        match (before.get(family, c), now.get(family, c)) {
            (Some(a), Some(b)) if dt > 0.0 => human((b - a).max(0.0) / dt),
            _ => "-".into(),
        }
    };
    let value = |family: &str, c: &str| now.get(family, c).map_or("-".into(), human);
    let mut out = String::new();
    let version = now
        .samples
        .get("sluice_build_info")
        .and_then(|r| r.first())
        .and_then(|(l, _)| l.get("version").cloned())
        .unwrap_or_default();
    let state = match (now.plain("sluice_up"), now.ready) {
        (Some(u), Some(true)) if u > 0.0 => "running, ready",
        (Some(u), _) if u > 0.0 => "running, NOT READY",
        _ => "starting or stopping",
    };
    let _ = writeln!(
        out,
        "sluice {version} at {}: {state}   (refreshed every {:.1} s; Ctrl-C quits)",
        target.address, dt
    );
    let _ = writeln!(out, "{}", "─".repeat(width.clamp(20, 200)));

    let _ = writeln!(
        out,
        "{:<22} {:<8} {:<10} {:>10} {:>10} {:>8} {:>8} {:>7}",
        "SOURCE", "TYPE", "TEAM", "EVENTS/S", "LAG", "ERRORS", "DEAD", "PAUSED"
    );
    for (name, (kind, team)) in now.components("sluice_source_events_total") {
        let _ = writeln!(
            out,
            "{:<22} {:<8} {:<10} {:>10} {:>10} {:>8} {:>8} {:>7}",
            cut(&name, 22),
            cut(&kind, 8),
            cut(&team, 10),
            rate("sluice_source_events_total", &name),
            value("sluice_source_lag_messages", &name),
            value("sluice_source_errors_total", &name),
            value("sluice_source_dead_lettered_total", &name),
            match now.get("sluice_source_paused", &name) {
                Some(p) if p > 0.0 => "yes",
                _ => "no",
            }
        );
    }
    let versions = plugin_versions(target.status_file.as_deref());
    let _ = writeln!(
        out,
        "\n{:<22} {:<10} {:>4} {:<13} {:>10} {:>10} {:>9} {:>8}",
        "PLUGIN", "TEAM", "GEN", "DIGEST", "BATCHES/S", "EVENTS/S", "MS/BATCH", "FAILED"
    );
    for (name, (_, team)) in now.components("sluice_plugin_batches_total") {
        let ms = match (
            before.get("sluice_plugin_batch_seconds_sum", &name),
            now.get("sluice_plugin_batch_seconds_sum", &name),
            before.get("sluice_plugin_batch_seconds_count", &name),
            now.get("sluice_plugin_batch_seconds_count", &name),
        ) {
            (Some(s0), Some(s1), Some(c0), Some(c1)) if c1 > c0 => {
                format!("{:.2}", (s1 - s0) / (c1 - c0) * 1000.0)
            }
            _ => "-".into(),
        };
        let (digest, generation) = versions
            .get(&name)
            .map_or(("-".to_owned(), "-".to_owned()), |(d, g)| {
                (d.clone(), g.to_string())
            });
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:>4} {:<13} {:>10} {:>10} {:>9} {:>8}",
            cut(&name, 22),
            cut(&team, 10),
            generation,
            digest,
            rate("sluice_plugin_batches_total", &name),
            rate("sluice_plugin_events_total", &name),
            ms,
            value("sluice_plugin_failures_total", &name),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<22} {:>12} {:>12} {:>8}",
        "CHANNEL", "QUEUED", "CAPACITY", "FILL"
    );
    for (name, _) in now.components("sluice_channel_starts_total") {
        let (queued, capacity) = (
            now.get("sluice_channel_queued_events", &name),
            now.get("sluice_channel_capacity_events", &name),
        );
        let fill = match (queued, capacity) {
            (Some(q), Some(c)) if c > 0.0 => format!("{:.0}%", q / c * 100.0),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>12} {:>12} {:>8}",
            cut(&name, 22),
            queued.map_or("-".into(), human),
            capacity.map_or("-".into(), human),
            fill
        );
    }
    let _ = writeln!(
        out,
        "\n{:<22} {:<13} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "SINK", "TYPE", "EVENTS/S", "BYTES/S", "FILES", "ERRORS", "FAILING"
    );
    for (name, (kind, _)) in now.components("sluice_sink_starts_total") {
        let errors = now
            .get("sluice_sink_write_errors_total", &name)
            .unwrap_or(0.0)
            + now.get("sluice_sink_errors_total", &name).unwrap_or(0.0);
        let _ = writeln!(
            out,
            "{:<22} {:<13} {:>10} {:>10} {:>8} {:>8} {:>8}",
            cut(&name, 22),
            cut(&kind, 13),
            rate("sluice_sink_events_total", &name),
            rate("sluice_sink_bytes_total", &name),
            value("sluice_sink_files_written_total", &name),
            human(errors),
            match now.get("sluice_sink_failing", &name) {
                Some(f) if f > 0.0 => "YES",
                _ => "no",
            }
        );
    }
    out
}

/// `n` in at most 6 characters: 1234, 12.3k, 4.56M.
fn human(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if a.fract() == 0.0 || a >= 100.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Terminal width from `COLUMNS` or the terminal, else 100.
fn width() -> usize {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return c;
    }
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointed-to struct.
    if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0
        && size.ws_col > 0
    {
        return size.ws_col as usize;
    }
    100
}

/// Runs the view until Ctrl-C (or once).
pub async fn run(target: Target, interval: Duration, once: bool) -> Result<i32> {
    let fetch = |t: Target| async move {
        tokio::task::spawn_blocking(move || scrape(&t))
            .await
            .context("scrape task")?
    };
    let mut before = fetch(target.clone()).await?;
    if once {
        tokio::time::sleep(interval).await;
        let now = fetch(target.clone()).await?;
        print!("{}", render(&target, &before, &now, width()));
        return Ok(0);
    }
    let mut stdout = std::io::stdout();
    // The alternate screen, without the cursor.
    write!(stdout, "\x1b[?1049h\x1b[?25l")?;
    let result = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(0),
            _ = tokio::time::sleep(interval) => {}
        }
        let now = match fetch(target.clone()).await {
            Ok(s) => s,
            Err(e) => {
                write!(stdout, "\x1b[H\x1b[2J{e:#}\r\n(retrying)")?;
                stdout.flush()?;
                continue;
            }
        };
        let view = render(&target, &before, &now, width()).replace('\n', "\x1b[K\r\n");
        write!(stdout, "\x1b[H{view}\x1b[J")?;
        stdout.flush()?;
        before = now;
    };
    write!(stdout, "\x1b[?25h\x1b[?1049l")?;
    stdout.flush()?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "# TYPE sluice_source_events_total counter\nsluice_source_events_total{component=\"tx\",type=\"kafka\",team=\"fraud\"} 100\nsluice_up 1\nsluice_sink_starts_total{component=\"lake\",type=\"object_store\"} 1\nsluice_sink_events_total{component=\"lake\",type=\"object_store\"} 50\n";
    const SECOND: &str = "sluice_source_events_total{component=\"tx\",type=\"kafka\",team=\"fraud\"} 300\nsluice_source_lag_messages{component=\"tx\",type=\"kafka\",team=\"fraud\"} 12345\nsluice_up 1\nsluice_sink_starts_total{component=\"lake\",type=\"object_store\"} 1\nsluice_sink_events_total{component=\"lake\",type=\"object_store\"} 250\nsluice_sink_failing{component=\"lake\",type=\"object_store\"} 1\n";

    #[test]
    fn rates_come_from_the_change_between_scrapes() {
        let t0 = Instant::now();
        let before = Scrape {
            at: Some(t0),
            samples: parse(FIRST),
            ready: Some(true),
        };
        let now = Scrape {
            at: Some(t0 + Duration::from_secs(2)),
            samples: parse(SECOND),
            ready: Some(false),
        };
        let target = Target {
            address: "127.0.0.1:9464".into(),
            token: None,
            status_file: None,
        };
        let view = render(&target, &before, &now, 80);
        assert!(view.contains("running, NOT READY"), "{view}");
        let source = view.lines().find(|l| l.starts_with("tx ")).unwrap();
        assert!(
            source.contains(" 100 ") && source.contains("12.3k"),
            "{source}"
        );
        assert!(
            source.contains("fraud") && source.contains("kafka"),
            "{source}"
        );
        let sink = view.lines().find(|l| l.starts_with("lake ")).unwrap();
        assert!(sink.contains(" 100 ") && sink.ends_with("YES"), "{sink}");
    }

    #[test]
    fn labels_with_escapes_are_read() {
        let l = parse_labels(r#"component="a\"b",topic="x,y",le="+Inf""#);
        assert_eq!(l["component"], "a\"b");
        assert_eq!(l["topic"], "x,y");
        assert_eq!(l["le"], "+Inf");
    }
}
