#!/usr/bin/env bash
# Apache Kafka, the reference broker of every Kafka-facing test: a single-node
# KRaft broker (broker and controller in one JVM) run from the jars Apache
# publishes to Maven Central, with four client listeners on loopback:
#
#   PLAINTEXT        no authentication; its principal (ANONYMOUS) is a super user
#   SSL              TLS, server authentication only; ANONYMOUS, super user
#   SASL_SSL         TLS + SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
#   SASL_PLAINTEXT   SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 without TLS
#
# Authorization is on (StandardAuthorizer): user `sluice` is a super user, user
# `noacl` exists for every mechanism but holds no ACL, so everything it asks
# for is refused. Certificates are made per broker directory at `prepare` time:
# a CA, the broker's certificate for 127.0.0.1/localhost signed by it, and an
# unrelated CA that a client must not trust.
#
#   scripts/kafka.sh install                 jars into the cache (skips if there)
#   scripts/kafka.sh classpath               prints the classpath
#   scripts/kafka.sh prepare DIR P S SS SP C ports: plaintext ssl sasl_ssl
#                                            sasl_plaintext controller; writes
#                                            DIR/server.properties, DIR/ca.pem,
#                                            DIR/other-ca.pem, formats DIR/data
#   scripts/kafka.sh run DIR                 execs the broker (foreground)
#   scripts/kafka.sh tool CLASS ARGS...      runs a Kafka tool class (e.g.
#                                            org.apache.kafka.tools.consumer.group.ConsumerGroupCommand)
#
# The jars live outside the clone, in ${SLUICE_CACHE:-~/.cache/sluice}/kafka/<version>,
# so a warm machine fetches nothing. Passwords below are test-only values.
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_VERSION=4.4.0
LOG4J_VERSION=2.25.3
SLF4J_VERSION=2.0.17
cache="${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
kafka_libs="${SLUICE_KAFKA_LIBS:-$cache/kafka/$KAFKA_VERSION/libs}"

SUPER_USER=sluice
SUPER_PASSWORD=sluice-test-secret-3f9a
NOACL_USER=noacl
NOACL_PASSWORD=noacl-test-secret-7c21

java_opts=(-Xmx768m -Xms256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)

install() {
  if [ -f "$kafka_libs/.complete" ]; then return; fi
  command -v java >/dev/null && command -v mvn >/dev/null || {
    echo "scripts/kafka.sh: java and mvn are needed to fetch Apache Kafka" >&2
    return 1
  }
  echo "fetching Apache Kafka $KAFKA_VERSION jars into $kafka_libs" >&2
  local pom
  pom=$(mktemp -d)
  cat >"$pom/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$kafka_libs"
  mkdir -p "$kafka_libs"
  if ! mvn -q -B -f "$pom/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$kafka_libs" >"$pom/mvn.log" 2>&1; then
    echo "scripts/kafka.sh: could not fetch the Apache Kafka jars; Maven said:" >&2
    grep -m 5 "ERROR" "$pom/mvn.log" >&2 || tail -n 5 "$pom/mvn.log" >&2
    rm -rf "$kafka_libs" "$pom"
    return 1
  fi
  rm -rf "$pom"
  touch "$kafka_libs/.complete"
}

classpath() { echo "$kafka_libs/*"; }

# A CA, a second unrelated CA, and the broker's key and certificate (PKCS#8
# key + chain in one PEM file, which Kafka reads as a PEM key store).
make_certs() {
  local dir=$1
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Sluice test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Untrusted test CA" \
      -keyout other-ca.key -out other-ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout broker.key -out broker.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile broker.ext -out broker.crt 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
    cat broker.pk8 broker.crt ca.pem >broker.pem
    rm -f broker.csr broker.ext broker.key broker.pk8 ca.srl other-ca.key
  )
}

prepare() {
  local dir=$1 p=$2 s=$3 ss=$4 sp=$5 c=$6
  [ -f "$kafka_libs/.complete" ] || [ -n "${SLUICE_KAFKA_LIBS:-}" ] || install
  rm -rf "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  make_certs "$dir"
  local scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
  local plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$SUPER_USER=\"$SUPER_PASSWORD\" user_$NOACL_USER=\"$NOACL_PASSWORD\";"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$c
listeners=PLAINTEXT://127.0.0.1:$p,SSL://127.0.0.1:$s,SASL_SSL://127.0.0.1:$ss,SASL_PLAINTEXT://127.0.0.1:$sp,CONTROLLER://127.0.0.1:$c
advertised.listeners=PLAINTEXT://127.0.0.1:$p,SSL://127.0.0.1:$s,SASL_SSL://127.0.0.1:$ss,SASL_PLAINTEXT://127.0.0.1:$sp
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=3000
group.classic.min.session.timeout.ms=3000
log.flush.interval.messages=1000000
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$SUPER_USER
allow.everyone.if.no.acl.found=false
ssl.keystore.type=PEM
ssl.keystore.location=$dir/broker.pem
ssl.client.auth=none
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=$plain
listener.name.sasl_plaintext.plain.sasl.jaas.config=$plain
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram
PROPS
  cat >"$dir/log4j2.properties" <<'PROPS'
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
PROPS
  local cluster
  # A URL-safe base64 id starts with '-' one time in 64, and the tool's argument
  # parser then reads it as an option; Kafka's own Uuid.randomUuid redraws such
  # ids, and so does this.
  cluster=$(python3 -c '
import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break
')
  local scram_args=()
  local mech user pw
  for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
    for user in "$SUPER_USER:$SUPER_PASSWORD" "$NOACL_USER:$NOACL_PASSWORD"; do
      pw=${user#*:}
      scram_args+=(--add-scram "$mech=[name=${user%%:*},password=$pw]")
    done
  done
  java "${java_opts[@]}" "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$(classpath)" \
    kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" "${scram_args[@]}" \
    >"$dir/format.log" 2>&1 || {
    echo "scripts/kafka.sh: formatting the broker's storage failed:" >&2
    cat "$dir/format.log" >&2
    return 1
  }
}

run() {
  local dir
  dir=$(cd "$1" && pwd)
  exec java "${java_opts[@]}" "-Dlog4j2.configurationFile=$dir/log4j2.properties" \
    -cp "$(classpath)" kafka.Kafka "$dir/server.properties"
}

tool() {
  local class=$1
  shift
  exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.level=ERROR -cp "$(classpath)" "$class" "$@"
}

# The environment a test needs for the broker in DIR with those ports.
env_of() {
  local dir p=$2 s=$3 ss=$4 sp=$5
  dir=$(cd "$1" && pwd)
  cat <<ENV
export SLUICE_TEST_KAFKA=127.0.0.1:$p
export SLUICE_TEST_KAFKA_TXN=127.0.0.1:$p
export SLUICE_TEST_KAFKA_SSL=127.0.0.1:$s
export SLUICE_TEST_KAFKA_SASL_SSL=127.0.0.1:$ss
export SLUICE_TEST_KAFKA_SASL_PLAINTEXT=127.0.0.1:$sp
export SLUICE_TEST_KAFKA_CA=$dir/ca.pem
export SLUICE_TEST_KAFKA_OTHER_CA=$dir/other-ca.pem
export SLUICE_TEST_KAFKA_USER=$SUPER_USER
export SLUICE_TEST_KAFKA_PASSWORD=$SUPER_PASSWORD
export SLUICE_TEST_KAFKA_NOACL_USER=$NOACL_USER
export SLUICE_TEST_KAFKA_NOACL_PASSWORD=$NOACL_PASSWORD
export SLUICE_KAFKA_SCRIPT=$PWD/scripts/kafka.sh
ENV
}

case "${1:-}" in
  install) install ;;
  classpath) classpath ;;
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  tool) shift; tool "$@" ;;
  env) shift; env_of "$@" ;;
  *) echo "usage: $0 install|classpath|prepare DIR P S SS SP C|run DIR|tool CLASS ARGS|env DIR P S SS SP" >&2; exit 2 ;;
esac
