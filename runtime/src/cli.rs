//! The `sluice` command line: `run`, `validate`, `top`, `resume`, `lake
//! verify`, `plugin list`, `plugin test`, `plugin new`, `import flume`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sluice_batch::{BatchBuf, OutcomeKind};

use crate::config;
use crate::golden::{self, Golden};
use crate::plugin::{Limits, PluginEngine, PluginInstance};
use crate::scaffold;
use crate::topology::{self, RunOptions};
use crate::units::HumanDuration;

/// Sluice: Kafka and other sources into object stores and Kafka, with
/// WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format on stderr: `text`, or `json` (one object per line,
    /// for log shippers).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log levels: a level (`debug`), or per module
    /// (`info,sluice::sinks=debug,rdkafka=warn`). Default: `RUST_LOG`, else `info`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message` and the component, e.g. `source`), `span`.
    Json,
}

impl Cli {
    /// Installs the process's log subscriber as the flags ask; an invalid
    /// `--log-level` is an error naming the directive.
    pub fn init_logging(&self) -> Result<()> {
        use std::io::IsTerminal;
        use tracing_subscriber::EnvFilter;
        let filter = match &self.log_level {
            Some(directives) => EnvFilter::builder()
                .parse(directives)
                .with_context(|| format!("--log-level `{directives}`"))?,
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init(),
            LogFormat::Json => builder.json().with_ansi(false).try_init(),
        }
        .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipelines of a configuration file until Ctrl-C.
    Run {
        /// The configuration file (TOML).
        config: PathBuf,
        /// Stop gracefully (flush files, commit offsets) once nothing has
        /// been read, written or retried for this long, e.g. `5s`: run as a
        /// batch job.
        #[arg(long, value_parser = parse_duration)]
        exit_when_idle: Option<Duration>,
        /// Do not print the status line even on a terminal.
        #[arg(long)]
        no_status: bool,
    },
    /// Check a configuration file and exit: 0 if valid, 2 with every problem
    /// (file:line:col, key, what is expected) if not.
    Validate {
        /// The configuration file (TOML).
        config: PathBuf,
    },
    /// Resume a source paused by a plugin with `on_failure = "pause"`, in
    /// the Sluice running this configuration.
    Resume {
        /// The configuration file the running Sluice was started with.
        config: PathBuf,
        /// The source to resume.
        source: String,
    },
    /// Watch a running agent: every component's rates, lag, errors and
    /// plugin versions, refreshed live (Ctrl-C quits). Reads the agent's
    /// admin endpoint (`[admin]`).
    Top {
        /// The agent's configuration: where its admin endpoint listens,
        /// its token, and its plugin status file.
        config: Option<PathBuf>,
        /// The admin endpoint, `host:port` (instead of the configuration's).
        #[arg(long)]
        address: Option<String>,
        /// A file holding the endpoint's bearer token (instead of the
        /// configuration's).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// How often to refresh, e.g. `1s`.
        #[arg(long, value_parser = parse_duration, default_value = "1s")]
        interval: Duration,
        /// Print one view (rates over one interval) and exit.
        #[arg(long)]
        once: bool,
    },
    /// Stream live events from a running agent as JSON lines: what a
    /// source read (`source:NAME`), what a plugin passed on
    /// (`plugin:NAME`), what enters a channel (`channel:NAME`) or reaches a
    /// sink (`sink:NAME`). Without `--point`, lists the points.
    Tap {
        /// The agent's configuration: where its admin endpoint listens and
        /// its token.
        config: Option<PathBuf>,
        /// Where to watch.
        #[arg(long)]
        point: Option<String>,
        /// Fraction of the events to copy, in (0, 1].
        #[arg(long, default_value = "1")]
        sample: f64,
        /// Events to print before exiting.
        #[arg(long, default_value = "100")]
        limit: u64,
        /// Longest to wait, in seconds.
        #[arg(long, default_value = "60")]
        seconds: u64,
        /// The admin endpoint, `host:port` (instead of the configuration's).
        #[arg(long)]
        address: Option<String>,
        /// A file holding the endpoint's bearer token.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Print the table definition (`CREATE ... TABLE`) over a sink's
    /// output: its columns, Hive partitions from its `path`, format and
    /// location. For sinks with `format` = "parquet", "csv" or "tsv".
    Ddl {
        /// The configuration file (TOML).
        config: PathBuf,
        /// The `object_store` sink.
        sink: String,
        /// Whose SQL: hive, trino, spark or duckdb.
        #[arg(long, value_enum, default_value = "hive")]
        dialect: crate::sinks::object_store::table::ddl::Dialect,
        /// Table name (default: the sink's name).
        #[arg(long)]
        table: Option<String>,
        /// The topic whose table it is, when the path's location part
        /// holds `%{topic}`.
        #[arg(long)]
        topic: Option<String>,
        /// The table's location instead of the sink's URL and path (e.g.
        /// `s3a://bucket/raw/orders` for Hadoop, or a local copy).
        #[arg(long)]
        location: Option<String>,
    },
    /// Inspect what sinks wrote.
    Lake {
        /// What to check.
        #[command(subcommand)]
        command: LakeCommand,
    },
    /// Work with plugin files.
    Plugin {
        /// What to do with a plugin.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Convert another agent's configuration into a Sluice one.
    Import {
        /// Which kind of configuration.
        #[command(subcommand)]
        what: ImportKind,
    },
}

/// `sluice import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportKind {
    /// Convert one agent of an Apache Flume configuration.
    ///
    /// Reads the agent's sources, channels, sinks, sink groups, selectors
    /// and interceptors from a Flume `.properties` file, writes a commented
    /// Sluice configuration (stdout, or `--output`), and reports on stderr
    /// what could not be carried over and what to do instead. Exit 0; 1 with
    /// `--strict` if something was not carried over; 2 if the file cannot be
    /// read or the agent has no components.
    Flume {
        /// The Flume configuration (`flume.conf`, Java properties).
        file: PathBuf,
        /// The agent to convert: the first part of its keys (`a1` in
        /// `a1.sources = r1`), as Flume's `--name`.
        #[arg(long, short = 'n')]
        agent: String,
        /// Write the Sluice configuration here instead of to stdout.
        #[arg(long, short = 'o', value_name = "OUT")]
        output: Option<PathBuf>,
        /// Exit 1 if anything could not be carried over (or is a
        /// placeholder to fill in).
        #[arg(long)]
        strict: bool,
        /// The plugin directory of the generated team: where
        /// `flume_interceptors.wasm`, `timestamp.wasm` and
        /// `header_router.wasm` are (default `plugins`, beside the output).
        /// A relative DIR is taken from the current directory and written
        /// absolute.
        #[arg(long, value_name = "DIR")]
        plugin_dir: Option<PathBuf>,
    },
}

/// `sluice lake ...`.
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Check an exactly-once object-store sink: every commit record (name,
    /// range, paths, checksum), every chain (gaps, overlaps), and the
    /// records against the visible files. Exit 0 if sound, 1 with every
    /// problem listed.
    Verify {
        /// The configuration file.
        config: PathBuf,
        /// The sink to check (`[sinks.<name>]`).
        sink: String,
    },
}

/// `sluice plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show the plugin versions running in the Sluice started with this
    /// configuration: team, digest, generation, since when, last refusal.
    List {
        /// The configuration file.
        config: PathBuf,
        /// Print the status as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin on events from a JSON-lines file and print each outcome as
    /// a JSON line: `{"index":0,"outcome":"modify","event":{...}}`.
    Test {
        /// The plugin component (`.wasm`).
        plugin: PathBuf,
        /// A TOML file holding the plugin's config table.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Events, one JSON object per line: `body` (string, or any JSON value,
        /// which is serialized), and optionally `key`, `headers` (object of
        /// strings), `topic`, `partition`, `offset`, `timestamp` (ms).
        #[arg(long)]
        input: PathBuf,
        /// Events per batch (all at once by default).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Golden file: instead of printing the outcomes, compare them with
        /// this file; print `ok: N events match FILE`, or a line diff on
        /// stderr and exit 1. Line endings and a final newline do not matter.
        #[arg(long, value_name = "FILE")]
        expected: Option<PathBuf>,
        /// With `--expected`: (re)write the golden file with the outcomes.
        #[arg(long, requires = "expected")]
        update: bool,
        /// Longest one batch call (and the plugin's instantiation) may run,
        /// as a pipeline's `time_budget`, e.g. `500ms` or `30s`.
        #[arg(long, value_parser = parse_duration, default_value = "2s")]
        time_budget: Duration,
    },
    /// Create a plugin project: a tiny interceptor (adds the header
    /// `processed-by: NAME`, drops events whose body is `drop me`) with a
    /// `build.sh` producing `NAME/NAME.wasm`, a golden test in `test/`, the
    /// language's helper in `sdk/` and the WIT contract in `wit/`.
    New {
        /// The language of the project.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// The plugin's name, kebab-case (`my-filter`); the directory created.
        name: String,
        /// Where to create `NAME/` (the current directory by default).
        #[arg(long, value_name = "PARENT", default_value = ".")]
        dir: PathBuf,
        /// Rust only: the `sluice-guest` SDK directory the project depends on
        /// (by default the `guest-sdk/` this binary was built from).
        #[arg(long, value_name = "PATH")]
        sdk_path: Option<PathBuf>,
    },
}

/// The configuration at `path`, or `None` after printing every problem
/// (the caller exits 2, as `sluice validate` does).
fn load_or_report(path: &std::path::Path) -> Option<config::Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, crate::units::UnitError> {
    s.parse::<HumanDuration>().map(HumanDuration::get)
}

/// Runs the command line; the returned code is the process exit status.
pub async fn main(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Validate { config } => Ok(validate(&config)),
        Command::Run {
            config,
            exit_when_idle,
            no_status,
        } => run(&config, exit_when_idle, no_status).await,
        Command::Lake {
            command: LakeCommand::Verify { config, sink },
        } => lake_verify(&config, &sink).await,
        Command::Ddl {
            config,
            sink,
            dialect,
            table,
            topic,
            location,
        } => ddl(
            &config,
            &sink,
            dialect,
            &crate::sinks::object_store::table::ddl::DdlOptions {
                table,
                topic,
                location,
            },
        ),
        Command::Resume { config, source } => resume(&config, &source),
        Command::Top {
            config,
            address,
            token_file,
            interval,
            once,
        } => {
            let Some(target) = admin_target(config.as_deref(), address, token_file)? else {
                return Ok(2);
            };
            crate::top::run(target, interval, once).await
        }
        Command::Tap {
            config,
            point,
            sample,
            limit,
            seconds,
            address,
            token_file,
        } => {
            let Some(target) = admin_target(config.as_deref(), address, token_file)? else {
                return Ok(2);
            };
            tokio::task::spawn_blocking(move || tap(&target, point, sample, limit, seconds))
                .await
                .context("tap task")?
        }
        Command::Plugin {
            command: PluginCommand::List { config, json },
        } => plugin_list(&config, json),
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    config,
                    input,
                    batch_size,
                    expected,
                    update,
                    time_budget,
                },
        } => {
            let limits = Limits {
                time_budget,
                ..Limits::default()
            };
            let run = |out: &mut dyn Write| {
                tokio::task::block_in_place(|| {
                    plugin_test(&plugin, config.as_deref(), &input, batch_size, limits, out)
                })
            };
            let Some(expected) = expected else {
                let failed = run(&mut std::io::stdout().lock())?;
                return Ok(if failed { 1 } else { 0 });
            };
            let mut out = Vec::new();
            let failed = run(&mut out)?;
            Ok(report_golden(
                golden::check(&out, &expected, update)?,
                &expected,
                failed,
            ))
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    lang,
                    name,
                    dir,
                    sdk_path,
                },
        } => plugin_new(lang, &name, dir, sdk_path),
        Command::Import {
            what:
                ImportKind::Flume {
                    file,
                    agent,
                    output,
                    strict,
                    plugin_dir,
                },
        } => Ok(import_flume(
            &file,
            agent,
            output.as_deref(),
            strict,
            plugin_dir,
        )),
    }
}

/// `sluice import flume`: 0, 1 (`--strict` and something unmapped) or 2.
fn import_flume(
    file: &Path,
    agent: String,
    output: Option<&Path>,
    strict: bool,
    plugin_dir: Option<PathBuf>,
) -> i32 {
    let plugin_dir = match plugin_dir.map(std::path::absolute).transpose() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: --plugin-dir: {e}");
            return 2;
        }
    };
    let options = crate::import::flume::Options {
        agent: agent.clone(),
        plugin_dir,
    };
    let imported = match crate::import::flume_file(file, &options) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let written = match output {
        Some(out) => std::fs::write(out, &imported.toml)
            .map(|()| out.display().to_string())
            .map_err(|e| format!("writing {}: {e}", out.display())),
        None => std::io::stdout()
            .lock()
            .write_all(imported.toml.as_bytes())
            .map(|()| "stdout".to_owned())
            .map_err(|e| format!("writing to stdout: {e}")),
    };
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let source = file.display().to_string();
    eprintln!(
        "imported agent `{agent}` of {source} into {written}: {}",
        imported.summary
    );
    eprint!("{}", imported.report.render(&source));
    let unmapped = imported.report.unmapped();
    if strict && unmapped > 0 {
        eprintln!("--strict: {unmapped} items not carried over");
        return 1;
    }
    0
}

/// `sluice validate`: 0 if the configuration loads, 2 (errors printed) if not.
fn validate(config: &Path) -> i32 {
    match config::load(config) {
        Ok(c) => {
            println!(
                "{}: ok ({} sources, {} plugins, {} channels, {} sinks)",
                config.display(),
                c.sources.len(),
                c.plugins.len(),
                c.channels.len(),
                c.sinks.len()
            );
            0
        }
        Err(errors) => {
            eprintln!("{errors}");
            2
        }
    }
}

/// `sluice run`: runs the pipelines until stopped (or idle, if asked).
async fn run(config: &Path, exit_when_idle: Option<Duration>, no_status: bool) -> Result<i32> {
    let Some(config) = load_or_report(config) else {
        return Ok(2);
    };
    let metrics = topology::run(
        config,
        RunOptions {
            exit_when_idle,
            status_line: !no_status,
            ..Default::default()
        },
    )
    .await?;
    let totals = topology::status::Totals::read(&metrics);
    tracing::info!(
        events_in = totals.events_in,
        events_out = totals.events_out,
        files = totals.files,
        dead_lettered = totals.dead_lettered,
        "stopped"
    );
    print!("{}", topology::status::summary(&metrics));
    Ok(0)
}

/// The configuration of `object_store` sink `sink`.
fn object_store_sink<'c>(
    config: &'c crate::config::Config,
    sink: &str,
) -> Result<&'c crate::sinks::object_store::ObjectStoreSinkConfig> {
    let Some(def) = config.sinks.get(sink) else {
        bail!("no sink named `{sink}` in {}", config.file.display());
    };
    def.kind
        .as_any()
        .downcast_ref::<crate::sinks::object_store::ObjectStoreSinkConfig>()
        .with_context(|| format!("sink `{sink}` is not an object_store sink"))
}

/// `sluice ddl`: prints the table definition over a sink's output.
fn ddl(
    config: &Path,
    sink: &str,
    dialect: crate::sinks::object_store::table::ddl::Dialect,
    options: &crate::sinks::object_store::table::ddl::DdlOptions,
) -> Result<i32> {
    let Some(config) = load_or_report(config) else {
        return Ok(2);
    };
    let os = object_store_sink(&config, sink)?;
    let sql = crate::sinks::object_store::table::ddl::ddl(sink, os, dialect, options)?;
    print!("{sql}");
    Ok(0)
}

/// `sluice lake verify`: 0 if the sink's commit chains hold, 1 if not.
async fn lake_verify(config: &Path, sink: &str) -> Result<i32> {
    let Some(config) = load_or_report(config) else {
        return Ok(2);
    };
    let os = object_store_sink(&config, sink)?;
    let report = crate::sinks::object_store::verify::verify(sink, os)
        .await
        .map_err(|e| anyhow::anyhow!("verifying sink `{sink}`: {e}"))?;
    print!("{}", report.render());
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

/// The admin endpoint to talk to, from the flags and the agent's
/// configuration; `None` after printing the configuration's problems.
fn admin_target(
    config: Option<&Path>,
    address: Option<String>,
    token_file: Option<PathBuf>,
) -> Result<Option<crate::remote::Target>> {
    let config = match config {
        Some(path) => match load_or_report(path) {
            Some(c) => Some(c),
            None => return Ok(None),
        },
        None => None,
    };
    let admin = config.as_ref().and_then(|c| c.admin.as_ref());
    let address = match (address, admin) {
        (Some(a), _) => a,
        (None, Some(admin)) => {
            // Where the agent says it listens (port 0 picks one), else `listen`.
            let recorded = config
                .as_ref()
                .map(|c| c.data_dir.join("status").join("admin.addr"))
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok());
            let mut addr = recorded.unwrap_or(admin.listen);
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            addr.to_string()
        }
        (None, None) => bail!("give the agent's configuration (with `[admin]`) or --address"),
    };
    let token = match token_file {
        Some(f) => Some(
            std::fs::read_to_string(&f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => admin
            .and_then(|a| a.token.as_ref())
            .map(|t| t.expose().to_owned()),
    };
    Ok(Some(crate::remote::Target {
        address,
        token,
        status_file: config
            .as_ref()
            .map(|c| c.data_dir.join("status").join("plugins.json")),
    }))
}

/// `sluice tap`: prints the tapped events (or the points) as they come.
fn tap(
    target: &crate::remote::Target,
    point: Option<String>,
    sample: f64,
    limit: u64,
    seconds: u64,
) -> Result<i32> {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let mut path = format!("/tap?sample={sample}&limit={limit}&seconds={seconds}");
    if let Some(point) = &point {
        path.push_str(&format!("&point={}", encode(point)));
    }
    let mut out = std::io::stdout().lock();
    crate::remote::stream_lines(target, &path, |line| {
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    })?;
    Ok(0)
}

/// `sluice resume`: asks the running agent to resume a paused source.
fn resume(config: &Path, source: &str) -> Result<i32> {
    let Some(config) = load_or_report(config) else {
        return Ok(2);
    };
    if !config.sources.contains_key(source) {
        bail!("no source named `{source}` in {}", config.file.display());
    }
    let dir = config.data_dir.join("control").join("resume");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(source), b"")
        .with_context(|| format!("writing a resume request in {}", dir.display()))?;
    println!("resume requested for source `{source}`");
    Ok(0)
}

/// `sluice plugin list`: the plugin versions live, from the status file.
fn plugin_list(config: &Path, json: bool) -> Result<i32> {
    let Some(config) = load_or_report(config) else {
        return Ok(2);
    };
    let path = config.data_dir.join("status").join("plugins.json");
    let rows = crate::plugin::registry::read_status(&path).map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<16} {:<12} {:<12} {:<16} {:>4}  {:<20}  last refusal",
        "PLUGIN", "TEAM", "KIND", "DIGEST", "GEN", "LIVE SINCE (UTC)"
    );
    for r in rows {
        let since = chrono::DateTime::from_timestamp_millis(r.since_unix_ms as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        println!(
            "{:<16} {:<12} {:<12} {:<16} {:>4}  {:<20}  {}",
            r.plugin,
            r.team,
            r.kind,
            &r.digest[..16.min(r.digest.len())],
            r.generation,
            since,
            r.last_rejection.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

/// `sluice plugin new`: creates a plugin project from its template.
fn plugin_new(
    lang: scaffold::Lang,
    name: &str,
    dir: PathBuf,
    sdk_path: Option<PathBuf>,
) -> Result<i32> {
    let created = scaffold::create(&scaffold::NewPlugin {
        lang,
        name: name.to_owned(),
        parent: dir,
        sdk_path,
    })
    .with_context(|| format!("creating the {lang} plugin `{name}`"))?;
    println!(
        "created {} ({lang}, {} files)",
        created.dir.display(),
        created.files.len()
    );
    if lang == scaffold::Lang::Rust && !created.sdk_path.join("Cargo.toml").is_file() {
        eprintln!(
            "warning: no Rust guest SDK at {}; pass --sdk-path or edit the `sluice-guest` \
             path in Cargo.toml",
            created.sdk_path.display()
        );
    }
    println!("next:");
    println!("  cd {}", created.dir.display());
    println!("  ./build.sh");
    println!(
        "  sluice plugin test {name}.wasm --config test/config.toml --input test/input.jsonl \
         --expected test/expected.jsonl"
    );
    Ok(0)
}

/// Prints the result of a golden-file check and returns the exit status:
/// 0 on a match or an update, 1 on a mismatch.
fn report_golden(result: Golden, path: &Path, failed: bool) -> i32 {
    match result {
        Golden::Match { lines } => {
            println!("ok: {lines} events match {}", path.display());
            0
        }
        Golden::Updated { lines } => {
            println!("updated {}: {lines} events", path.display());
            if failed {
                eprintln!(
                    "note: a batch failed as a whole; the golden file records `failed` outcomes"
                );
            }
            0
        }
        Golden::Mismatch(diff) => {
            eprint!("{}", diff.text);
            eprintln!(
                "mismatch: the output ({} lines) differs from {} ({} lines) in {} changed lines, \
                 first at line {}; if the new output is right, rerun with --update",
                diff.actual_lines,
                path.display(),
                diff.expected_lines,
                diff.changed,
                diff.first_line
            );
            1
        }
    }
}

/// Runs `plugin` over the events in `input` within `limits`, writing one
/// JSON line per event to `out`. Returns whether any batch failed as a whole.
pub fn plugin_test(
    plugin: &Path,
    config: Option<&Path>,
    input: &Path,
    batch_size: Option<usize>,
    limits: Limits,
    out: &mut dyn Write,
) -> Result<bool> {
    let config_json = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading plugin config {}", path.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing plugin config {}", path.display()))?;
            serde_json::to_string(&table)?
        }
        None => "{}".to_string(),
    };
    let engine = PluginEngine::new()?;
    let loaded = engine.load(plugin, None)?;
    let name = plugin
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let mut instance = PluginInstance::new(engine, loaded, &name, config_json, limits);

    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let events = crate::plugin::input::parse(&input.display().to_string(), &text)
        .map_err(anyhow::Error::msg)?;
    if events.is_empty() {
        bail!("{} holds no events", input.display());
    }
    let mut failed = false;
    let size = batch_size.unwrap_or(events.len()).max(1);
    for (chunk_no, chunk) in events.chunks(size).enumerate() {
        let mut batch = BatchBuf::default();
        for (i, e) in chunk.iter().enumerate() {
            e.push_to(&mut batch, chunk_no * size + i);
        }
        let base = chunk_no * size;
        match instance.call(&batch) {
            Ok(result) => {
                for (i, o) in result.outcomes.iter().enumerate() {
                    let original = batch.get(i).context("outcome without event")?;
                    let mut line = serde_json::Map::new();
                    line.insert("index".into(), (base + i).into());
                    line.insert("outcome".into(), o.kind.as_str().into());
                    match o.kind {
                        OutcomeKind::RouteTo => {
                            line.insert(
                                "route".into(),
                                result.labels[o.label as usize].clone().into(),
                            );
                        }
                        OutcomeKind::DeadLetter => {
                            line.insert(
                                "reason".into(),
                                result.labels[o.label as usize].clone().into(),
                            );
                        }
                        _ => {}
                    }
                    if o.kind != OutcomeKind::Drop {
                        let shown = if o.kind != OutcomeKind::DeadLetter {
                            result
                                .replacements
                                .get(o.replacement as usize)
                                .unwrap_or(original)
                        } else {
                            original
                        };
                        line.insert("event".into(), event_json(&shown, &original));
                    }
                    writeln!(out, "{}", serde_json::Value::Object(line))?;
                }
            }
            Err(failure) => {
                failed = true;
                for i in 0..batch.len() {
                    let line = serde_json::json!({
                        "index": base + i,
                        "outcome": "failed",
                        "reason": failure.to_string(),
                    });
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    Ok(failed)
}

/// JSON form of an event as `plugin test` prints it (origin from `origin`).
fn event_json(
    event: &sluice_batch::EventRef<'_>,
    origin: &sluice_batch::EventRef<'_>,
) -> serde_json::Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let headers: serde_json::Map<String, serde_json::Value> = event
        .headers()
        .map_while(Result::ok)
        .map(|(k, v)| (k.to_owned(), text(v).into()))
        .collect();
    let ts = event.timestamp();
    serde_json::json!({
        "key": event.key().map(text),
        "body": text(event.body()),
        "headers": headers,
        "topic": origin.topic(),
        "partition": origin.partition(),
        "offset": origin.offset(),
        "timestamp": (ts != sluice_batch::NO_TIMESTAMP).then_some(ts),
    })
}
