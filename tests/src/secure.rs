//! The secured listeners of the reference broker (`scripts/kafka.sh`, started
//! by `scripts/services.sh`): their addresses, the CAs and the users from the
//! environment, the librdkafka properties a client needs on each, and an
//! agent process that runs `sluice run` the way the binary does.
//!
//! [`secure`] returns `None` (the test is skipped, with a message) when the
//! variables are absent, and panics when `SLUICE_REQUIRE_SERVICES=1`, like
//! [`crate::services`].

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::ClientConfig;

/// The broker's listeners and credentials, from `target/services.env`.
#[derive(Debug, Clone)]
pub struct Secure {
    /// `SLUICE_TEST_KAFKA`: PLAINTEXT; its principal (ANONYMOUS) is a super user.
    pub plaintext: String,
    /// `SLUICE_TEST_KAFKA_SSL`: TLS, server authentication only.
    pub ssl: String,
    /// `SLUICE_TEST_KAFKA_SASL_SSL`: TLS + SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512.
    pub sasl_ssl: String,
    /// `SLUICE_TEST_KAFKA_SASL_PLAINTEXT`: SASL without TLS.
    pub sasl_plaintext: String,
    /// `SLUICE_TEST_KAFKA_CA`: the CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// `SLUICE_TEST_KAFKA_OTHER_CA`: an unrelated CA.
    pub other_ca: PathBuf,
    /// `SLUICE_TEST_KAFKA_USER`: a super user of every mechanism.
    pub user: String,
    /// `SLUICE_TEST_KAFKA_PASSWORD`.
    pub password: String,
    /// `SLUICE_TEST_KAFKA_NOACL_USER`: a user without any ACL.
    pub noacl_user: String,
    /// `SLUICE_TEST_KAFKA_NOACL_PASSWORD`.
    pub noacl_password: String,
}

/// The variables of [`Secure`]'s fields, in their order.
const VARS: [&str; 10] = [
    "SLUICE_TEST_KAFKA",
    "SLUICE_TEST_KAFKA_SSL",
    "SLUICE_TEST_KAFKA_SASL_SSL",
    "SLUICE_TEST_KAFKA_SASL_PLAINTEXT",
    "SLUICE_TEST_KAFKA_CA",
    "SLUICE_TEST_KAFKA_OTHER_CA",
    "SLUICE_TEST_KAFKA_USER",
    "SLUICE_TEST_KAFKA_PASSWORD",
    "SLUICE_TEST_KAFKA_NOACL_USER",
    "SLUICE_TEST_KAFKA_NOACL_PASSWORD",
];

/// The secured broker from the environment, or `None` (with a message) when
/// it is absent and not required.
pub fn secure() -> Option<Secure> {
    let values: Vec<Option<String>> = VARS.iter().map(|v| std::env::var(v).ok()).collect();
    if let Some(missing) = VARS.iter().zip(&values).find(|(_, v)| v.is_none()) {
        if std::env::var("SLUICE_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!(
                "{} must be set (scripts/services.sh start writes target/services.env)",
                missing.0
            );
        }
        eprintln!(
            "skipped: no secured Kafka ({} is unset); run scripts/test.sh to start it",
            missing.0
        );
        return None;
    }
    let mut v = values.into_iter().map(Option::unwrap_or_default);
    let mut next = || v.next().unwrap_or_default();
    Some(Secure {
        plaintext: next(),
        ssl: next(),
        sasl_ssl: next(),
        sasl_plaintext: next(),
        ca: next().into(),
        other_ca: next().into(),
        user: next(),
        password: next(),
        noacl_user: next(),
        noacl_password: next(),
    })
}

/// A SASL mechanism the broker enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// librdkafka's `sasl.mechanism` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A secured listener, with its mechanism for SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// TLS only.
    Ssl,
    /// TLS and SASL.
    SaslSsl(Mechanism),
    /// SASL without TLS.
    SaslPlaintext(Mechanism),
}

impl Listener {
    /// librdkafka's `security.protocol` value.
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Ssl => "ssl",
            Self::SaslSsl(_) => "sasl_ssl",
            Self::SaslPlaintext(_) => "sasl_plaintext",
        }
    }

    /// The mechanism, for SASL listeners.
    pub fn mechanism(self) -> Option<Mechanism> {
        match self {
            Self::Ssl => None,
            Self::SaslSsl(m) | Self::SaslPlaintext(m) => Some(m),
        }
    }

    /// Whether the listener speaks TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl(_))
    }
}

/// How a configuration gives the password.
#[derive(Debug, Clone)]
pub enum Password {
    /// Written in the file.
    Inline(String),
    /// `{ file = PATH }`.
    File(PathBuf),
    /// `{ env = VARIABLE }`.
    Env(String),
}

impl Password {
    fn toml(&self) -> String {
        match self {
            Self::Inline(p) => toml_string(p),
            Self::File(path) => {
                format!("{{ file = {} }}", toml_string(&path.display().to_string()))
            }
            Self::Env(var) => format!("{{ env = {} }}", toml_string(var)),
        }
    }
}

/// A TOML basic string holding `s`.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Secure {
    /// The address of `listener`.
    pub fn bootstrap(&self, listener: Listener) -> &str {
        match listener {
            Listener::Ssl => &self.ssl,
            Listener::SaslSsl(_) => &self.sasl_ssl,
            Listener::SaslPlaintext(_) => &self.sasl_plaintext,
        }
    }

    /// The body of a Sluice property table (`[sources.x.kafka]`, ...) for
    /// `listener`: trusting `ca`, logging in as `user` with `password`.
    pub fn properties_toml(
        &self,
        listener: Listener,
        ca: &Path,
        user: &str,
        password: &Password,
    ) -> String {
        let mut out = format!("\"security.protocol\" = \"{}\"\n", listener.protocol());
        if listener.tls() {
            out += &format!(
                "\"ssl.ca.location\" = {}\n",
                toml_string(&ca.display().to_string())
            );
        }
        if let Some(m) = listener.mechanism() {
            out += &format!(
                "\"sasl.mechanism\" = \"{}\"\n\"sasl.username\" = {}\n\"sasl.password\" = {}\n",
                m.name(),
                toml_string(user),
                password.toml()
            );
        }
        out
    }

    /// A client configuration for `listener` as the super user.
    pub fn client_config(&self, listener: Listener) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap(listener))
            .set("security.protocol", listener.protocol());
        if listener.tls() {
            c.set("ssl.ca.location", self.ca.display().to_string());
        }
        if let Some(m) = listener.mechanism() {
            c.set("sasl.mechanism", m.name())
                .set("sasl.username", &self.user)
                .set("sasl.password", &self.password);
        }
        c
    }
}

/// The body of an agent process: a test binary re-executed with `env_var`
/// naming a configuration runs `sluice run CONFIG --no-status` as the
/// `sluice` binary does (logs on stderr with `log_filter`, `error: ...` and
/// a non-zero status when the run fails) and exits. Returns at once when
/// `env_var` is unset, i.e. in the ordinary test run.
pub fn run_cli_agent_if_asked(env_var: &str, log_filter: &str) {
    let Ok(config) = std::env::var(env_var) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cli = sluice::cli::Cli {
        command: sluice::cli::Command::Run {
            config: config.into(),
            exit_when_idle: None,
            no_status: true,
        },
        log_format: sluice::cli::LogFormat::Text,
        log_level: None,
    };
    let code = match runtime.block_on(sluice::cli::main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    drop(runtime);
    std::process::exit(code);
}

/// Waits up to `within` for `child` to exit; kills it after that. Returns
/// its status (`None` if it had to be killed) and how long it ran since
/// `started`.
pub fn wait_for_exit(
    child: &mut Child,
    started: Instant,
    within: Duration,
) -> Result<(Option<ExitStatus>, Duration)> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for the agent")? {
            return Ok((Some(status), started.elapsed()));
        }
        if started.elapsed() >= within {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((None, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks `child` to stop gracefully (SIGINT, as Ctrl-C) and waits up to
/// `within` for it; kills it after that.
pub fn interrupt(child: &mut Child, within: Duration) -> Result<Option<ExitStatus>> {
    stop_with(child, libc::SIGINT, within)
}

/// Asks `child` to stop gracefully with SIGTERM (what Kubernetes sends) and
/// waits up to `within` for it; kills it after that.
pub fn terminate(child: &mut Child, within: Duration) -> Result<Option<ExitStatus>> {
    stop_with(child, libc::SIGTERM, within)
}

fn stop_with(
    child: &mut Child,
    signal: libc::c_int,
    within: Duration,
) -> Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(child.id()).context("agent pid")?;
    // SAFETY: signalling our own child process by its PID.
    unsafe {
        libc::kill(pid, signal);
    }
    Ok(wait_for_exit(child, Instant::now(), within)?.0)
}

/// Every file under `dir` (recursively) whose content contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    crate::files_under(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}
