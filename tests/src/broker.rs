//! An Apache Kafka broker of the test's own, with its log on disk, that the
//! test can kill and restart on the same ports.
//!
//! The shared broker of `scripts/services.sh` must outlive every test, so a
//! test that kills its broker gets one of its own: [`Broker::start`] runs
//! `scripts/kafka.sh prepare` (configuration, certificates, SCRAM users and a
//! formatted KRaft log in a temporary directory) and then `scripts/kafka.sh
//! run`, which execs the JVM, so the child's PID is the broker's. The same
//! script configures the shared broker: one definition of the reference broker.
//!
//! [`Broker::kill`] sends SIGKILL to the child (its own PID, nothing else):
//! no orderly shutdown, like a crashed or power-cycled broker. Its log
//! directory stays, so [`Broker::restart`] brings back every topic, record,
//! committed offset and transaction on the same address. Dropping the
//! `Broker` kills the process. The script is `$SLUICE_KAFKA_SCRIPT`, or
//! `scripts/kafka.sh` of this checkout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a (re)started broker gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// An Apache Kafka process with its log on disk; see the module docs.
#[derive(Debug)]
pub struct Broker {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `scripts/kafka.sh` of this checkout, or `$SLUICE_KAFKA_SCRIPT`.
pub fn kafka_script() -> PathBuf {
    std::env::var_os("SLUICE_KAFKA_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("scripts/kafka.sh"))
}

impl Broker {
    /// Prepares and starts a broker on free loopback ports; returns once
    /// its PLAINTEXT listener accepts connections.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the broker's directory")?;
        // Plaintext, SSL, SASL_SSL, SASL_PLAINTEXT, controller.
        let ports: Vec<String> = (0..5)
            .map(|_| free_port().map(|a| a.port().to_string()))
            .collect::<Result<_>>()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse()?;
        let home = dir.path().join("broker");
        let out = Command::new("bash")
            .arg(kafka_script())
            .arg("prepare")
            .arg(&home)
            .args(&ports)
            .output()
            .context("running scripts/kafka.sh prepare")?;
        if !out.status.success() {
            bail!(
                "scripts/kafka.sh prepare failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = dir.path().join("kafka.log");
        let mut broker = Self {
            addr,
            dir,
            log,
            child: None,
            starts: 0,
        };
        broker.spawn().await?;
        Ok(broker)
    }

    /// `127.0.0.1:<port>`, the bootstrap servers (PLAINTEXT).
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

    /// Kills the process if it runs, then starts it again on the same ports
    /// with the same log; returns once it accepts connections.
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.starts += 1;
        let mut command = Command::new("bash");
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
            .arg(kafka_script())
            .arg("run")
            .arg(self.dir.path().join("broker"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `scripts/kafka.sh run`")?;
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
                    "Apache Kafka exited with {status} (start {}):\n{}",
                    self.starts,
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Apache Kafka did not listen on {} within {START_TIMEOUT:?}:\n{}",
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
        if crate::services().is_none() {
            return Ok(());
        }
        let mut broker = Broker::start().await?;
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
