#!/usr/bin/env bash
# Peer benchmark: runs the same job with several tools on the same broker and
# the same data, and prints a Markdown table (events/s, CPU seconds per million
# events, peak RSS). It is a manual measurement, NOT part of CI.
#
# The job: consume a Kafka topic from the earliest offset with a new consumer
# group, mask the JSON field `card_number` (keep the last 4 digits), write
# rolled newline-delimited files, commit offsets only once the data is written.
# The data: N JSON events of ~190 bytes on a new 2-partition topic, produced
# once before all tools (deleted at the end unless --keep-topic).
# The tools (each skipped, with the reason printed, if it cannot be set up):
#   librdkafka   raw consume loop (Python confluent-kafka), no processing: the
#                client's limit
#   sluice       target/release/sluice ($SLUICE_BIN), no plugin -> files
#   sluice-mask  the same with the WASM `mask` interceptor
#                (target/wasm32-wasip2/plugin/mask.wasm, $SLUICE_MASK_WASM)
#   python       a Python confluent-kafka pipeline (json.loads, mask, dumps)
#   flume        Apache Flume 1.11.0: Kafka source, search_replace
#                interceptor, memory channel, file_roll sink
#   connect      Kafka Connect standalone (4.4.0's jars, or 4.3.0's where
#                connect-file 4.4.0 is not published): FileStreamSinkConnector
#                with the MaskField SMT
# The script neither builds Sluice nor its plugin: build them first
# (cargo build --release; scripts/build-plugins.sh).
#
# Run:
#   scripts/peer-bench.sh                         all tools, 1 000 000 events
#   scripts/peer-bench.sh --events 100000 --only sluice,sluice-mask,flume
#   scripts/peer-bench.sh --help                  every option
#
# Broker: $SLUICE_TEST_KAFKA if set; else the one in target/services.env if it
# answers; else this script runs `scripts/services.sh start` and, at the end,
# `scripts/services.sh stop` (only then). Everything talks to 127.0.0.1.
#
# Installs (skipping what is present), all outside the clone, under
# ${SLUICE_CACHE:-~/.cache/sluice}/peers:
#   venv/                  a Python virtualenv with confluent-kafka (pip)
#   flume/1.11.0/libs/     Flume's jars + a Log4j 2 binding (mvn)
#   connect/<ver>/libs/    connect-file/-runtime/-json/-transforms + Log4j 2 (mvn)
#   runs/<id>/<tool>/      each run's configs and logs (outputs are deleted
#                          after they are checked unless --keep-output)
# Needs python3 (with venv), and for Flume and Connect java 17+ and mvn.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/peers"
venv="$cache/venv"
mkdir -p "$cache"

if ! "$venv/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
  echo "installing confluent-kafka into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet confluent-kafka
fi

for arg in "$@"; do
  case "$arg" in
    -h | --help) exec "$venv/bin/python" scripts/peer_bench.py --help ;;
  esac
done

# Can something listen at host:port? (a bounded probe, not a wait)
answers() {
  python3 - "$1" <<'PY'
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
try:
    socket.create_connection((host, int(port)), timeout=3).close()
except (OSError, ValueError):
    sys.exit(1)
PY
}

if [ -z "${SLUICE_TEST_KAFKA:-}" ] && [ -f target/services.env ]; then
  # Services another command started: use them, never stop them. (Running
  # `scripts/services.sh start` here would first stop them.)
  # shellcheck disable=SC1091
  candidate=$(. target/services.env && echo "${SLUICE_TEST_KAFKA:-}")
  if [ -n "$candidate" ] && answers "$candidate"; then
    SLUICE_TEST_KAFKA=$candidate
  fi
fi
if [ -z "${SLUICE_TEST_KAFKA:-}" ]; then
  echo "no broker given: starting scripts/services.sh" >&2
  scripts/services.sh start
  trap 'scripts/services.sh stop' EXIT
  # shellcheck disable=SC1091
  . target/services.env
fi

"$venv/bin/python" scripts/peer_bench.py --bootstrap "$SLUICE_TEST_KAFKA" --cache "$cache" "$@"
