//! A tansu broker of the test's own, with persistent storage, that the test
//! can kill and restart on the same port.
//!
//! The shared broker of `scripts/services.sh` keeps its data in memory, so
//! a restart would lose every topic. [`Broker`] runs `tansu broker` with its
//! `s3://` storage engine (built with the `dynostore` feature, which
//! `services.sh install` enables) against the test S3 server (moto): topics,
//! records, committed offsets and group metadata are objects in bucket
//! [`BROKER_BUCKET`] under a cluster id unique to the broker, so the data
//! outlives the process and concurrent tests do not meet. tansu reads the
//! S3 location from the standard `AWS_*` variables, which are set on the
//! child process only.
//!
//! [`Broker::kill`] sends SIGKILL to the child (its own PID, nothing else):
//! no orderly shutdown, like a crashed or power-cycled broker.
//! [`Broker::restart`] starts it again on the same address. Dropping the
//! `Broker` kills the process. The binary is `tansu` from `PATH`, or
//! `$SLUICE_TANSU`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::create_bucket;

/// Bucket holding the data of the tests' own brokers.
pub const BROKER_BUCKET: &str = "sluice-tansu";

/// How long a (re)started broker gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A tansu process with persistent storage; see the module docs.
#[derive(Debug)]
pub struct Broker {
    addr: SocketAddr,
    s3: String,
    cluster: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Broker {
    /// Starts a broker on a free loopback port that stores its data through
    /// the S3 endpoint `s3` (`http://host:port`, a moto server).
    pub async fn start(s3: &str) -> Result<Self> {
        create_bucket(s3, BROKER_BUCKET).await?;
        let addr = free_port()?;
        let dir = tempfile::tempdir().context("creating the broker's log directory")?;
        let mut broker = Self {
            addr,
            s3: s3.trim_end_matches('/').to_owned(),
            cluster: crate::unique("cluster"),
            log: dir.path().join("tansu.log"),
            _dir: dir,
            child: None,
            starts: 0,
        };
        broker.spawn().await?;
        Ok(broker)
    }

    /// `127.0.0.1:<port>`, the bootstrap servers.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (SIGKILL) and reaps it; nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs, then starts it again on the same port
    /// with the same storage; returns once it accepts connections.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn().await
    }

    /// The end of the broker's log (all its runs), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn spawn(&mut self) -> Result<()> {
        let binary = std::env::var("SLUICE_TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://{}", self.addr);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.starts += 1;
        let mut command = Command::new(&binary);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of
            // the parent. The broker dies with the thread that started it
            // (a tokio worker, which lives as long as the runtime), so also
            // when the test is killed before `Drop` runs.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .arg("broker")
            .args(["--cluster-id", &self.cluster])
            .args(["--storage-engine", &format!("s3://{BROKER_BUCKET}/")])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .env("AWS_ENDPOINT", &self.s3)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting `{binary} broker` (install it with scripts/services.sh install)")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "tansu exited with {status} (start {}):\n{}",
                    self.starts,
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not listen on {} within {START_TIMEOUT:?}:\n{}",
                    self.addr,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Message, Offset, TopicPartitionList};

    use super::*;

    async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) -> Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .create()?;
        let mut pending = Vec::new();
        for i in range {
            let id = format!("r{i}");
            pending.push(
                producer
                    .send_result(FutureRecord::to(topic).key(&id).payload(&id))
                    .map_err(|(e, _)| e)?,
            );
        }
        for p in pending {
            p.await?.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    async fn read_all(bootstrap: &str, topic: &str, expected: usize) -> Result<HashSet<String>> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", crate::unique("reader"))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut seen = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < expected && Instant::now() < deadline {
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
        }
        Ok(seen)
    }

    /// Records produced before a kill are there after the restart, and the
    /// restarted broker takes new ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_survive_a_kill_and_restart() -> Result<()> {
        let Some(services) = crate::services() else {
            return Ok(());
        };
        let mut broker = Broker::start(&services.s3).await?;
        let topic = crate::unique("persist");
        crate::create_topic(&broker.bootstrap(), &topic, 2).await?;
        produce(&broker.bootstrap(), &topic, 0..500).await?;
        let first = broker.pid();
        broker.restart().await?;
        assert_ne!(broker.pid(), first);
        produce(&broker.bootstrap(), &topic, 500..1000).await?;
        let seen = read_all(&broker.bootstrap(), &topic, 1000).await?;
        assert_eq!(seen.len(), 1000, "broker log:\n{}", broker.log_tail(20));
        let pid = broker.pid().context("running")?;
        drop(broker);
        // The process is gone.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        Ok(())
    }
}
