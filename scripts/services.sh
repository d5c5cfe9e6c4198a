#!/usr/bin/env bash
# Installs (skipping what is present), starts and stops the real services the
# integration tests talk to, on free loopback ports:
#   - a tansu Kafka broker (crates.io `tansu`, memory storage engine),
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

install() {
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
  echo "services up: kafka 127.0.0.1:$kport, s3 http://127.0.0.1:$s3port"
}

stop() {
  for name in tansu moto; do
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
