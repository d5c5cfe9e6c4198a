//! The terminal status line (events/s in and out, consumer lag, files
//! written, dead letters) and the idle detector behind `--exit-when-idle`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Totals the status line shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Events read by all sources.
    pub events_in: u64,
    /// Events written by all sinks.
    pub events_out: u64,
    /// Summed consumer lag of all Kafka sources.
    pub lag: i64,
    /// Files completed by all object-store sinks.
    pub files: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
}

impl Totals {
    /// Reads the totals from `metrics`.
    pub fn read(metrics: &Metrics) -> Self {
        Self {
            events_in: metrics.sum_suffix_prefixed("source.", ".events"),
            events_out: metrics.sum_suffix_prefixed("sink.", ".events"),
            lag: metrics.gauge_sum_suffix(".lag"),
            files: metrics.sum_suffix(".files_written"),
            dead_lettered: metrics.sum_suffix_prefixed("source.", ".dead_lettered"),
        }
    }
}

/// What `sluice run` prints when the run ends: the totals, then one line
/// per partition a bounded source read (see [`crate::ranges`]).
///
/// ```text
/// run ended: 9000 events read, 9000 written, 3 files completed, 0 dead-lettered
/// bounded source `orders`: orders:0 offsets 120..5000 (4880 events)
/// bounded source `orders`: orders:1 offsets 0..2000 of 0..4000 (2000 events; stopped before the end)
/// ```
pub(crate) fn summary(metrics: &Metrics) -> String {
    use std::fmt::Write as _;
    let t = Totals::read(metrics);
    let mut out = format!(
        "run ended: {} events read, {} written, {} files completed, {} dead-lettered\n",
        t.events_in, t.events_out, t.files, t.dead_lettered
    );
    for r in metrics.ranges().all() {
        let _ = write!(
            out,
            "bounded source `{}`: {}:{} offsets ",
            r.source, r.topic, r.partition
        );
        let _ = if r.complete {
            writeln!(out, "{}..{} ({} events)", r.start, r.end, r.events)
        } else {
            writeln!(
                out,
                "{}..{} of {}..{} ({} events; stopped before the end)",
                r.start, r.next, r.start, r.end, r.events
            )
        };
    }
    out
}

/// Prints the status line every second while stderr is a terminal.
pub fn spawn(metrics: Arc<Metrics>, enabled: bool, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        if !enabled || !std::io::stderr().is_terminal() {
            return;
        }
        let mut last = Totals::read(&metrics);
        let mut last_at = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => {
                    eprintln!();
                    return;
                }
            }
            let now = Totals::read(&metrics);
            let secs = last_at.elapsed().as_secs_f64().max(1e-3);
            let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
            eprint!(
                "\r\x1b[2Kin {:>8.0} ev/s  out {:>8.0} ev/s  lag {:>7}  files {:>5}  dead-lettered {:>6}  (total in {})",
                rate(now.events_in, last.events_in),
                rate(now.events_out, last.events_out),
                now.lag,
                now.files,
                now.dead_lettered,
                now.events_in,
            );
            let _ = std::io::stderr().flush();
            last = now;
            last_at = Instant::now();
        }
    })
}

/// Longest `exit_when_idle` waits for the very first event (a consumer group
/// join can take several seconds) before it considers an empty run idle.
pub(crate) const FIRST_EVENT_GRACE: Duration = Duration::from_secs(60);

/// What moves while a pipeline has work. Sinks count because a run whose
/// sources have caught up may still be writing (a file rolls) or be held
/// back by a sink that retries (its channel is full, so the sources read
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    read: u64,
    written: u64,
    files: u64,
    retries: u64,
}

impl Activity {
    fn read(metrics: &Metrics) -> Self {
        let t = Totals::read(metrics);
        Self {
            read: t.events_in,
            written: t.events_out,
            files: t.files,
            retries: metrics.sum_suffix_prefixed("sink.", ".retries"),
        }
    }
}

/// Cancels `shutdown` once `feed_done` has fired and, for `idle`, no source
/// has read an event and no sink has written, completed a file or retried.
/// Before the first event arrives, the wait is at least
/// [`FIRST_EVENT_GRACE`], so a slow group join is not mistaken for idleness.
pub async fn exit_when_idle(
    metrics: Arc<Metrics>,
    idle: Duration,
    feed_done: CancellationToken,
    shutdown: CancellationToken,
) {
    feed_done.cancelled().await;
    let mut seen = Activity::read(&metrics);
    let mut since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let now = Activity::read(&metrics);
        if now != seen {
            seen = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed()
            >= if now.read == 0 {
                idle.max(FIRST_EVENT_GRACE)
            } else {
                idle
            }
        {
            tracing::info!(
                events = now.read,
                "no new events for {idle:?}; shutting down"
            );
            shutdown.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio::time::Instant;

    use super::*;

    #[test]
    fn the_summary_lists_totals_and_bounded_ranges() {
        use crate::ranges::PartitionRange;
        let metrics = Metrics::new();
        metrics
            .counter("source.orders.events")
            .fetch_add(7, Ordering::Relaxed);
        metrics
            .counter("sink.lake.events")
            .fetch_add(7, Ordering::Relaxed);
        metrics
            .counter("sink.lake.files_written")
            .fetch_add(2, Ordering::Relaxed);
        let range = |partition, next, complete| PartitionRange {
            source: "orders".into(),
            topic: "orders".into(),
            partition,
            start: 3,
            end: 8,
            next,
            events: (next - 3) as u64,
            complete,
        };
        metrics.ranges().record(range(1, 5, false));
        metrics.ranges().record(range(0, 8, true));
        assert_eq!(
            summary(&metrics),
            "run ended: 7 events read, 7 written, 2 files completed, 0 dead-lettered\n\
             bounded source `orders`: orders:0 offsets 3..8 (5 events)\n\
             bounded source `orders`: orders:1 offsets 3..5 of 3..8 (2 events; stopped before the end)\n"
        );
    }

    /// Runs the detector with `idle` (on the test's paused clock) over
    /// metrics in which a source has read `events`.
    fn detector(events: u64, idle: Duration) -> (Arc<Metrics>, CancellationToken) {
        let metrics = Metrics::new();
        metrics
            .counter("source.in.events")
            .fetch_add(events, Ordering::Relaxed);
        let feed_done = CancellationToken::new();
        feed_done.cancel();
        let shutdown = CancellationToken::new();
        tokio::spawn(exit_when_idle(
            metrics.clone(),
            idle,
            feed_done,
            shutdown.clone(),
        ));
        (metrics, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn a_retrying_sink_keeps_the_run_alive_then_quiet_ends_it() {
        let (metrics, shutdown) = detector(10, Duration::from_secs(3));
        let retries = metrics.counter("sink.lake.retries");
        // Sources read nothing for 10 s while the sink retries every 2 s.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!shutdown.is_cancelled(), "idle while the sink retries");
            retries.fetch_add(1, Ordering::Relaxed);
        }
        let quiet = Instant::now();
        shutdown.cancelled().await;
        let waited = quiet.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_millis(3300),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn written_events_and_files_count_as_activity() {
        let (metrics, shutdown) = detector(1, Duration::from_secs(2));
        for name in ["sink.lake.events", "sink.lake.files_written"] {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            metrics.counter(name).fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!shutdown.is_cancelled());
        shutdown.cancelled().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_run_waits_for_the_first_event_grace() {
        let (_metrics, shutdown) = detector(0, Duration::from_secs(1));
        let started = Instant::now();
        shutdown.cancelled().await;
        assert!(started.elapsed() >= FIRST_EVENT_GRACE);
    }
}
