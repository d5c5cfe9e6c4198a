#!/usr/bin/env bash
# Installs (skipping what is present), starts and stops the real services the
# integration tests talk to, on free loopback ports:
#   - a tansu Kafka broker (crates.io `tansu`, memory storage engine),
#   - an Apache Kafka broker (KRaft, single node, from the Maven Central jars
#     `org.apache.kafka:kafka_2.13` and its runtime dependencies), for the
#     exactly-once tests: tansu has no transactions,
#   - a moto S3 server (PyPI `moto[server]`) with bucket `sluice-test`.
# `start` writes their addresses to target/services.env; `stop` ends only the
# processes it started, by the PIDs it recorded.
# The fault tests (tests/tests/broker_restart.rs) also start tansu brokers of
# their own, with `s3://` storage on this moto server (bucket `sluice-tansu`,
# which they create), through the binary named by SLUICE_TANSU; tansu's
# `dynostore` feature provides both the memory and the s3 engines.
set -euo pipefail
cd "$(dirname "$0")/.."
state=target/services
mkdir -p "$state"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_port() { # host port seconds
  python3 - "$1" "$2" "$3" <<'PY'
import socket, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + limit
while time.time() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
}

KAFKA_VERSION=3.9.1
kafka_home="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka/$KAFKA_VERSION"
# SLUICE_KAFKA_LIBS may name a folder that already holds the jars.
kafka_libs="${SLUICE_KAFKA_LIBS:-$kafka_home/libs}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The Apache Kafka jars (broker, KRaft controller, storage tool) with their
# runtime dependencies, in $kafka_libs; skipped when already there, and
# unless SLUICE_FETCH_KAFKA=1 (this path is unverified: it needs Maven
# Central, which the machines this project runs on cannot reach): where it cannot be reached this only says so, and `start`
# then runs without the broker (SLUICE_TEST_KAFKA_TXN unset).
install_kafka() {
  if [ -n "${SLUICE_KAFKA_LIBS:-}" ] || [ -f "$kafka_libs/.complete" ]; then return; fi
  # Opt-in: machines of this project's kind cannot reach Maven Central, so
  # by default nothing is installed or fetched for it.
  if [ "${SLUICE_FETCH_KAFKA:-0}" != 1 ]; then return; fi
  if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    echo "installing a Java runtime and Maven (for the Apache Kafka broker)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      default-jre-headless maven >/dev/null
  fi
  echo "fetching Apache Kafka $KAFKA_VERSION jars into $kafka_libs"
  local pom
  pom=$(mktemp -d)
  cat >"$pom/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
POM
  rm -rf "$kafka_libs"
  mkdir -p "$kafka_libs"
  if mvn -q -B -f "$pom/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$kafka_libs" >"$pom/mvn.log" 2>&1; then
    touch "$kafka_libs/.complete"
  else
    echo "could not fetch the Apache Kafka jars (Maven Central unreachable?); the exactly-once"
    echo "tests will have no transactional broker. Last lines of Maven's output:"
    grep -m 2 "ERROR" "$pom/mvn.log" || tail -n 3 "$pom/mvn.log"
    rm -rf "$kafka_libs"
  fi
  rm -rf "$pom"
}

# Starts a single-node KRaft Apache Kafka broker on loopback when its jars are
# there; prints its port, or nothing.
start_kafka() {
  [ -f "$kafka_libs/.complete" ] || [ -n "${SLUICE_KAFKA_LIBS:-}" ] || return 0
  local port cport dir="$PWD/$state/kafka"
  port=$(free_port)
  cport=$(free_port)
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
PROPS
  cat >"$dir/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
  local java_opts=(-Xmx512m -Xms128m -XX:+UseSerialGC "-Dlog4j.configuration=file:$dir/log4j.properties")
  java "${java_opts[@]}" -cp "$kafka_libs/*" kafka.tools.StorageTool format \
    -t "$(python3 -c 'import base64,uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')" \
    -c "$dir/server.properties" >"$state/kafka-format.log" 2>&1 ||
    { echo "formatting the Kafka storage failed:" >&2; cat "$state/kafka-format.log" >&2; return 1; }
  java "${java_opts[@]}" -cp "$kafka_libs/*" kafka.Kafka "$dir/server.properties" >"$state/kafka.log" 2>&1 &
  echo $! >"$state/kafka.pid"
  wait_port 127.0.0.1 "$port" 120 || { echo "Apache Kafka did not start:" >&2; tail -n 40 "$state/kafka.log" >&2; return 1; }
  echo "$port"
}

install() {
  install_kafka
  if ! command -v tansu >/dev/null 2>&1; then
    echo "installing tansu (a Kafka-compatible broker; several minutes on a cold machine)"
    cargo install tansu --locked --features dynostore
  fi
  if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]'
  fi
}

start() {
  install
  stop >/dev/null 2>&1 || true
  local kport s3port
  kport=$(free_port)
  s3port=$(free_port)
  tansu broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$kport" \
    --advertised-listener-url "tcp://127.0.0.1:$kport" >"$state/tansu.log" 2>&1 &
  echo $! >"$state/tansu.pid"
  python3 -m moto.server -H 127.0.0.1 -p "$s3port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  local t0=$SECONDS txnport
  txnport=$(start_kafka)
  [ -z "$txnport" ] || echo "Apache Kafka up in $((SECONDS - t0)) s"
  wait_port 127.0.0.1 "$kport" 60 || { echo "tansu did not start:"; cat "$state/tansu.log"; exit 1; }
  wait_port 127.0.0.1 "$s3port" 60 || { echo "moto did not start:"; cat "$state/moto.log"; exit 1; }
  python3 - "$s3port" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/sluice-test", method="PUT")
urllib.request.urlopen(req, timeout=10).read()
PY
  cat >target/services.env <<ENV
export SLUICE_TEST_KAFKA=127.0.0.1:$kport
export SLUICE_TEST_S3=http://127.0.0.1:$s3port
export SLUICE_TEST_S3_BUCKET=sluice-test
export SLUICE_TANSU=$(command -v tansu)
ENV
  if [ -n "$txnport" ]; then
    echo "export SLUICE_TEST_KAFKA_TXN=127.0.0.1:$txnport" >>target/services.env
  fi
  echo "services up: kafka 127.0.0.1:$kport, s3 http://127.0.0.1:$s3port, transactional kafka ${txnport:+127.0.0.1:$txnport}${txnport:-none}"
}

stop() {
  for name in tansu moto kafka; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  rm -f target/services.env
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
