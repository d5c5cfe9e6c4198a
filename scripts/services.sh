#!/usr/bin/env bash
# Installs (skipping what is present), starts and stops the real services the
# integration tests talk to, on free loopback ports:
#   - Apache Kafka 4.x, the reference broker (KRaft, single node, from its
#     Maven Central jars; scripts/kafka.sh): PLAINTEXT, SSL, SASL_SSL and
#     SASL_PLAINTEXT listeners, SCRAM and PLAIN users, ACLs enforced,
#   - a moto S3 server (PyPI `moto[server]`) with bucket `sluice-test`.
# `install` also installs DuckDB and PyArrow (PyPI), the readers the lake
# tests check Parquet, csv and tsv output with.
# `install` also installs Prometheus and promtool (Debian's `prometheus`),
# which the admin endpoint's tests start themselves, and tmux (`sluice top`).
# `start` writes their addresses (and the broker's CA and test users) to
# target/services.env; `stop` ends only the processes it started, by the PIDs
# it recorded. The fault tests (tests/tests/broker_restart.rs) start brokers
# of their own through scripts/kafka.sh, which SLUICE_KAFKA_SCRIPT names.
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

install() {
  scripts/kafka.sh install
  if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]'
  fi
  # The real readers of the lake tests (tests/tests/lake_parquet.rs).
  if ! python3 -c 'import duckdb, pyarrow' >/dev/null 2>&1; then
    python3 -m pip install --quiet duckdb pyarrow
  fi
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
    || ! command -v tmux >/dev/null || ! command -v systemd-analyze >/dev/null; then
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    # The package's own service is not started: policy-rc.d, or no init here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus tmux systemd >/dev/null
  fi
}

start() {
  install
  stop >/dev/null 2>&1 || true
  local p s ss sp c s3port t0=$SECONDS
  p=$(free_port); s=$(free_port); ss=$(free_port); sp=$(free_port); c=$(free_port)
  s3port=$(free_port)
  python3 -m moto.server -H 127.0.0.1 -p "$s3port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  scripts/kafka.sh prepare "$state/kafka" "$p" "$s" "$ss" "$sp" "$c"
  scripts/kafka.sh run "$state/kafka" >"$state/kafka.log" 2>&1 &
  echo $! >"$state/kafka.pid"
  wait_port 127.0.0.1 "$p" 120 || { echo "Apache Kafka did not start:"; tail -n 40 "$state/kafka.log"; exit 1; }
  echo "Apache Kafka up in $((SECONDS - t0)) s"
  wait_port 127.0.0.1 "$s3port" 60 || { echo "moto did not start:"; cat "$state/moto.log"; exit 1; }
  python3 - "$s3port" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/sluice-test", method="PUT")
urllib.request.urlopen(req, timeout=10).read()
PY
  {
    scripts/kafka.sh env "$state/kafka" "$p" "$s" "$ss" "$sp"
    echo "export SLUICE_TEST_S3=http://127.0.0.1:$s3port"
    echo "export SLUICE_TEST_S3_BUCKET=sluice-test"
  } >target/services.env
  echo "services up: kafka 127.0.0.1:$p (ssl $s, sasl_ssl $ss, sasl_plaintext $sp), s3 http://127.0.0.1:$s3port"
}

stop() {
  for name in moto kafka; do
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
