#!/usr/bin/env python3
"""Peer benchmark driver: the same Kafka -> masked, rolled files job run by
several tools against the same broker and the same data.

Started by scripts/peer-bench.sh (which provides the virtualenv with
confluent-kafka and the broker address); see that script's header for how to
run it. Uses the Python standard library and confluent-kafka only.

For each selected tool the driver
  1. installs what the tool needs (Maven artifacts into the cache) or returns
     a reason to skip it,
  2. writes its configuration into a fresh run directory and starts it as a
     child process with a new consumer group,
  3. polls the group's committed offsets until they reach the end offsets of
     both partitions (and, for every tool, until its output files hold N
     lines: Flume commits at the channel, before its sink writes),
  4. samples CPU time (utime + stime) and peak RSS (VmHWM) of the child's
     process tree from /proc at that moment, then stops the child by its PID
     (SIGTERM, SIGKILL after a timeout) and reaps it with os.wait4,
  5. verifies the output: N lines, no 16-digit card number left unmasked.

`peer_bench.py worker python|librdkafka ...` is the Python pipeline and the
raw consume loop themselves; the driver runs them as child processes like any
other tool.
"""

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Versions of the Java peers (Apache Kafka's matches scripts/kafka.sh).
FLUME_VERSION = "1.11.0"
KAFKA_VERSION = "4.4.0"
# connect-file (FileStreamSinkConnector) is not published for every Kafka
# release (4.4.0 lacks it); Kafka Connect then runs from this release's jars.
CONNECT_FALLBACK = "4.3.0"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
JAVA_HEAP = ["-Xms256m", "-Xmx1g"]

PARTITIONS = 2
ROLL_SIZE = 64 * 1024 * 1024  # every rolling tool: 64 MiB or 10 s
ROLL_SECONDS = 10

# An unmasked card number: 13+ consecutive digits (ids have 10, nothing else
# in an event has more than 7).
UNMASKED = re.compile(rb"\d{13,}")

TOOL_ORDER = ["librdkafka", "sluice", "sluice-mask", "python", "flume", "connect"]


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Workers: the Python pipeline and the raw consume loop (run as children).
# --------------------------------------------------------------------------


def mask_value(value, keep=4):
    """`4111111111000001` -> `************0001`."""
    value = str(value)
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


class RollingWriter:
    """Appends lines to `part-NNNNN.jsonl` files, starting a new file once the
    current one holds `roll_size` bytes or is `roll_seconds` old."""

    def __init__(self, directory, roll_size, roll_seconds):
        self.directory = directory
        self.roll_size = roll_size
        self.roll_seconds = roll_seconds
        self.file = None
        self.opened = 0.0
        self.written = 0
        self.index = 0

    def write(self, data):
        if self.file is None:
            self.index += 1
            path = os.path.join(self.directory, "part-%05d.jsonl" % self.index)
            self.file = open(path, "wb")
            self.opened = time.monotonic()
            self.written = 0
        self.file.write(data)
        self.written += len(data)

    def flush(self):
        """Flushes the open file to the OS (no fsync) and rolls it if due."""
        if self.file is None:
            return
        self.file.flush()
        if self.written >= self.roll_size or time.monotonic() - self.opened >= self.roll_seconds:
            self.close()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def run_worker(args):
    from confluent_kafka import Consumer, KafkaError, KafkaException

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    writer = RollingWriter(args.out, ROLL_SIZE, ROLL_SECONDS) if args.kind == "python" else None
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    loads = json.loads
    try:
        while not stopping:
            messages = consumer.consume(num_messages=10000, timeout=1.0)
            if not messages:
                if writer:
                    writer.flush()  # rolls an old file while idle
                continue
            if writer:
                lines = []
                for m in messages:
                    if m.error():
                        raise KafkaException(m.error())
                    event = loads(m.value())
                    if "card_number" in event:
                        event["card_number"] = mask_value(event["card_number"])
                    lines.append(dumps(event))
                lines.append("")
                writer.write("\n".join(lines).encode())
                writer.flush()
            else:
                for m in messages:
                    if m.error():
                        raise KafkaException(m.error())
            # The batch is written (flushed to the OS): commit what was consumed.
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as e:
                if e.args[0].code() != KafkaError._NO_OFFSET:
                    raise
    finally:
        if writer:
            writer.close()
        consumer.close()


# --------------------------------------------------------------------------
# Helpers: processes, /proc sampling, Kafka admin, output checks.
# --------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tree_pids(pid):
    """`pid` and its live descendants (via /proc/<pid>/task/*/children)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def sample_tree(pid):
    """(CPU seconds user+sys, summed VmHWM in bytes) of the process tree,
    including children it has already reaped (cutime/cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, hwm = 0.0, 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # fields[0] is field 3 (state): utime..cstime are fields 14..17.
            cpu += sum(int(x) for x in fields[11:15]) / tick
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    return cpu, hwm


class Child:
    """A started tool, reaped with os.wait4 (so its rusage is kept) instead
    of Popen's own wait."""

    def __init__(self, argv, cwd, log_file):
        # Own session: a Ctrl-C on the terminal reaches the driver only, and
        # the driver stops the child by its PID.
        env = dict(os.environ, NO_COLOR="1")  # plain logs
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        self.status = self.rusage = None

    def _reap(self, flags):
        if self.status is None:
            pid, status, rusage = os.wait4(self.pid, flags)
            if pid == self.pid:
                self.status, self.rusage = status, rusage
                self.proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait
        return self.status is not None

    def exited(self):
        return self._reap(os.WNOHANG)

    def stop(self, grace=20.0):
        """SIGTERM by PID, SIGKILL after `grace` s; returns the rusage."""
        if not self.exited():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not self.exited():
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    self._reap(0)
                    break
                time.sleep(0.1)
        return self.rusage


class Kafka:
    def __init__(self, bootstrap):
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create_topic(self, topic):
        from confluent_kafka.admin import NewTopic

        futures = self.admin.create_topics([NewTopic(topic, PARTITIONS, 1)], request_timeout=30)
        futures[topic].result(timeout=60)
        # Wait until the metadata lists both partitions.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = self.admin.list_topics(topic, timeout=10)
            t = md.topics.get(topic)
            if t and not t.error and len(t.partitions) == PARTITIONS:
                return
            time.sleep(0.2)
        raise RuntimeError("topic %s did not appear" % topic)

    def delete_topic(self, topic):
        try:
            self.admin.delete_topics([topic], request_timeout=30)[topic].result(timeout=60)
        except Exception as e:  # best effort
            log("could not delete topic %s: %s" % (topic, e))

    def end_offsets(self, topic):
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "peer-bench-watermarks"})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                    for p in range(PARTITIONS)}
        finally:
            c.close()

    def committed(self, group, topic):
        """{partition: committed offset} of the group (-1001 = none)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
        futures = self.admin.list_consumer_group_offsets([request], request_timeout=10)
        result = futures[group].result(timeout=15)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    def produce(self, topic, n):
        """N JSON events of ~190 bytes, alternating over the two partitions.
        Returns the average value size."""
        from confluent_kafka import Producer

        p = Producer({
            "bootstrap.servers": self.bootstrap,
            "linger.ms": 20,
            "batch.size": 1000000,
            "queue.buffering.max.messages": 200000,
            "acks": "all",
        })
        base = datetime.datetime(2026, 12, 3, 10, 0, 0, tzinfo=datetime.timezone.utc)
        errors = []

        def on_delivery(err, _msg):
            if err:
                errors.append(err)

        total = 0
        for i in range(1, n + 1):
            ts = base + datetime.timedelta(milliseconds=i)
            value = (
                '{"id":"%010d","ts":"%s.%03dZ","user":"u%06d","merchant":"m-%05d",'
                '"card_number":"4111111111%06d","amount":%d.%02d,"currency":"EUR",'
                '"country":"DE","status":"approved"}'
                % (i, ts.strftime("%Y-%m-%dT%H:%M:%S"), ts.microsecond // 1000,
                   i % 1000000, i % 100000, i % 1000000, 1 + i % 500, i % 100)
            ).encode()
            total += len(value)
            while True:
                try:
                    p.produce(topic, value, partition=i % PARTITIONS, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.1)
            if i % 10000 == 0:
                p.poll(0)
        if p.flush(120) != 0 or errors:
            raise RuntimeError("producing failed: %s" % (errors[:3] or "flush timed out"))
        return total / max(n, 1)


def scan_output(directory, masked_sample=None):
    """(lines, unmasked card numbers, sample lines not matching
    `masked_sample`) over every non-hidden file under `directory` (Sluice
    keeps a file being written as a hidden `.<name>.inprogress`)."""
    lines = unmasked = bad_sample = 0
    sampled = 0
    for root, _dirs, files in os.walk(directory):
        for name in sorted(files):
            if name.startswith("."):
                continue
            with open(os.path.join(root, name), "rb") as f:
                tail = b""
                while True:
                    chunk = f.read(8 << 20)
                    if not chunk:
                        break
                    chunk = tail + chunk
                    cut = chunk.rfind(b"\n") + 1
                    whole, tail = chunk[:cut], chunk[cut:]
                    lines += whole.count(b"\n")
                    if masked_sample is None:
                        continue
                    unmasked += len(UNMASKED.findall(whole))
                    if sampled < 1000:
                        for line in whole.split(b"\n", 1000 - sampled)[:1000 - sampled]:
                            if line:
                                sampled += 1
                                bad_sample += not masked_sample.search(line)
                if tail:  # an unterminated last line
                    lines += 1
                    if masked_sample is not None:
                        unmasked += len(UNMASKED.findall(tail))
    return lines, unmasked, bad_sample


def count_lines(directory):
    return scan_output(directory)[0]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def maven_copy(dest, dependencies, log_path, transitive=True):
    """Copies `dependencies` ((group, artifact, version) triples), and unless
    `transitive` is false their runtime dependencies, into `dest` with the
    Maven dependency plugin. Returns None or what went wrong."""
    if not shutil.which("mvn"):
        return "mvn is not on PATH"
    os.makedirs(dest, exist_ok=True)
    pom_dir = tempfile.mkdtemp(prefix="peer-bench-pom-")
    deps = "\n".join(
        "    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>" % d
        for d in dependencies)
    write(os.path.join(pom_dir, "pom.xml"), """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice</groupId>
  <artifactId>peer-bench</artifactId>
  <version>1</version>
  <dependencies>
%s
  </dependencies>
</project>
""" % deps)
    log("  fetching %s with mvn into %s" % (", ".join("%s:%s" % (a, v) for _, a, v in dependencies), dest))
    try:
        with open(log_path, "w") as out:
            rc = subprocess.call(
                ["mvn", "-q", "-B", "-f", os.path.join(pom_dir, "pom.xml"),
                 DEPENDENCY_PLUGIN + ":copy-dependencies", "-DincludeScope=runtime",
                 "-DexcludeTransitive=%s" % str(not transitive).lower(),
                 "-DoutputDirectory=" + dest],
                stdout=out, stderr=subprocess.STDOUT, timeout=900)
    except subprocess.TimeoutExpired:
        rc = "timeout"
    finally:
        shutil.rmtree(pom_dir, ignore_errors=True)
    if rc == 0:
        return None
    with open(log_path, errors="replace") as f:
        errors = [l for l in f if "ERROR" in l][:1]
    # Keep the gist: no colour codes, no repository addresses.
    gist = re.sub(r"\x1b\[[0-9;]*m|\[ERROR\] *", "", "".join(errors)).strip()
    gist = re.sub(r"\s*\([a-z]+://[^)]*\)|\s*(in|from) [a-z]+://\S+", "", gist)
    gist = re.sub(r" -> \[Help 1\]|\. This failure was cached.*", "", gist)
    gist = gist.split("peer-bench:jar:1: ")[-1]
    return "mvn failed (%s; log: %s)" % (gist[-240:] or "rc %s" % rc, log_path)


def install_jars(libs, dependencies, log_path):
    """`maven_copy` into a fresh `libs` unless a previous run completed it."""
    if os.path.exists(os.path.join(libs, ".complete")):
        return None
    shutil.rmtree(libs, ignore_errors=True)
    reason = maven_copy(libs, dependencies, log_path)
    if reason:
        shutil.rmtree(libs, ignore_errors=True)
        return reason
    open(os.path.join(libs, ".complete"), "w").close()
    return None


def java_ok():
    if not shutil.which("java"):
        return "java is not on PATH"
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)', out)
    if not m or int(m.group(1)) < 17:
        return "Java 17+ is needed (found: %s)" % (out.splitlines() or ["?"])[0]
    return None


LOG4J2_WARN = """rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
"""


# --------------------------------------------------------------------------
# The tools. Each `setup_*` returns (argv, group, note[, label]) after
# writing its config into `run_dir`, or raises Skip.
# --------------------------------------------------------------------------


class Skip(Exception):
    pass


class Ctx:
    def __init__(self, args, topic, run_id):
        self.args = args
        self.topic = topic
        self.run_id = run_id
        self.bootstrap = args.bootstrap
        self.cache = args.cache

    def group(self, tool):
        return "peer-bench-%s-%s" % (tool, self.run_id)


def setup_worker(kind, ctx, run_dir, out_dir):
    group = ctx.group(kind)
    argv = [sys.executable, os.path.abspath(__file__), "worker", kind,
            "--bootstrap", ctx.bootstrap, "--group", group, "--topic", ctx.topic, "--out", out_dir]
    if kind == "python":
        note = ("1 thread: consume(10000), json.loads, mask, json.dumps, append to a file "
                "rolled at 64 MiB/10 s, flush, commit (sync) per batch")
    else:
        note = "client limit: consume(10000) and a sync commit per batch, no processing, no output"
    return argv, group, note


def sluice_paths():
    binary = os.path.abspath(os.environ.get("SLUICE_BIN") or os.path.join(REPO, "target/release/sluice"))
    wasm = os.path.abspath(os.environ.get("SLUICE_MASK_WASM")
                           or os.path.join(REPO, "target/wasm32-wasip2/plugin/mask.wasm"))
    return binary, wasm


def setup_sluice(masked, ctx, run_dir, out_dir):
    binary, wasm = sluice_paths()
    if not os.access(binary, os.X_OK):
        raise Skip("no Sluice binary at %s (build it: cargo build --release, or set SLUICE_BIN)" % binary)
    if masked and not os.path.isfile(wasm):
        raise Skip("no mask plugin at %s (build it: scripts/build-plugins.sh, or set SLUICE_MASK_WASM)" % wasm)
    tool = "sluice-mask" if masked else "sluice"
    group = ctx.group(tool)
    state = os.path.join(run_dir, "state")
    q = json.dumps  # a JSON string is a valid TOML basic string
    config = ["data_dir = %s" % q(state), "",
              "[sources.bench]",
              'type = "kafka"',
              "bootstrap_servers = %s" % q(ctx.bootstrap),
              "group_id = %s" % q(group),
              "topics = [%s]" % q(ctx.topic),
              'start_from = "earliest"',
              'channels = ["files"]']
    if masked:
        config += ['interceptors = ["mask"]',
                   'dead_letter = "dead"', "",
                   "[plugins.mask]",
                   'type = "interceptor"',
                   "path = %s" % q(wasm),
                   'config = { fields = ["card_number"], keep_last = 4 }', "",
                   "[channels.dead]",
                   'type = "memory"', "",
                   "[sinks.dead]",
                   'type = "null"',
                   'channel = "dead"']
    config += ["",
               "[channels.files]",
               'type = "memory"', "",
               "[sinks.files]",
               'type = "object_store"',
               'channel = "files"',
               "url = %s" % q("file://" + out_dir),
               'path = "%{topic}/%Y-%m-%d"',
               'format = "text"',
               'roll_size = "64MiB"',
               'roll_interval = "%ds"' % ROLL_SECONDS]
    if ctx.args.sluice_roll_idle:
        config.append("roll_idle = %s" % q(ctx.args.sluice_roll_idle))
    path = os.path.join(run_dir, "sluice.toml")
    write(path, "\n".join(config) + "\n")
    check = subprocess.run([binary, "validate", path], capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        raise Skip("`sluice validate` refused the config: %s" % (check.stdout + check.stderr).strip()[:300])
    rolls = "64 MiB/%ds" % ROLL_SECONDS + (", idle %s" % ctx.args.sluice_roll_idle if ctx.args.sluice_roll_idle else "")
    if masked:
        note = ("mask.wasm (fields=card_number, keep_last 4), memory channel, object_store file://, "
                "rolls %s; cold plugin compile included" % rolls)
    else:
        note = "memory channel, object_store file://, rolls %s" % rolls
    note += "; commits only completed (renamed) files"
    if not ctx.args.sluice_roll_idle:
        note += ", so completion includes the last files' 10 s roll"
    return [binary, "run", "--no-status", path], group, note


def setup_flume(ctx, run_dir, out_dir):
    reason = java_ok()
    if reason:
        raise Skip(reason)
    libs = os.path.join(ctx.cache, "flume", FLUME_VERSION, "libs")
    reason = install_jars(libs, [
        ("org.apache.flume", "flume-ng-node", FLUME_VERSION),
        ("org.apache.flume.flume-ng-sources", "flume-kafka-source", FLUME_VERSION),
        # Flume logs through SLF4J 1.7; its distribution binds it to Log4j 2.
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    ], os.path.join(ctx.cache, "flume", "mvn.log"))
    if reason:
        raise Skip(reason)
    group = ctx.group("flume")
    # Java properties: `\\d` is the regex `\d`. The events hold
    # "card_number":"<16 digits>"; keep the last 4.
    agent = """a1.sources = kafka
a1.channels = mem
a1.sinks = files

a1.sources.kafka.type = org.apache.flume.source.kafka.KafkaSource
a1.sources.kafka.channels = mem
a1.sources.kafka.kafka.bootstrap.servers = {bootstrap}
a1.sources.kafka.kafka.topics = {topic}
a1.sources.kafka.kafka.consumer.group.id = {group}
a1.sources.kafka.kafka.consumer.auto.offset.reset = earliest
a1.sources.kafka.batchSize = 1000
a1.sources.kafka.interceptors = mask
a1.sources.kafka.interceptors.mask.type = search_replace
a1.sources.kafka.interceptors.mask.searchPattern = ("card_number":")\\\\d{{12}}(\\\\d{{4}}")
a1.sources.kafka.interceptors.mask.replaceString = $1************$2

a1.channels.mem.type = memory
a1.channels.mem.capacity = 100000
a1.channels.mem.transactionCapacity = 1000

a1.sinks.files.type = file_roll
a1.sinks.files.channel = mem
a1.sinks.files.sink.directory = {out}
a1.sinks.files.sink.rollInterval = {roll}
a1.sinks.files.sink.batchSize = 1000
""".format(bootstrap=ctx.bootstrap, topic=ctx.topic, group=group, out=out_dir, roll=ROLL_SECONDS)
    write(os.path.join(run_dir, "agent.properties"), agent)
    write(os.path.join(run_dir, "log4j2.properties"), LOG4J2_WARN)
    argv = ["java"] + JAVA_HEAP + [
        "-Dlog4j2.configurationFile=" + os.path.join(run_dir, "log4j2.properties"),
        "-cp", os.path.join(libs, "*"), "org.apache.flume.node.Application",
        "-f", os.path.join(run_dir, "agent.properties"), "-n", "a1"]
    note = ("Kafka source (batch 1000), search_replace regex mask, memory channel, "
            "file_roll 10 s (it has no size roll), -Xmx1g; offsets commit at the channel, so completion "
            "also waits for N lines on disk")
    return argv, group, note


def setup_connect(ctx, run_dir, out_dir):
    reason = java_ok()
    if reason:
        raise Skip(reason)
    # The connector, the runtime, the converter and the SMT all of one
    # release: plugins built for one release can fail on another's runtime.
    for version in (KAFKA_VERSION, CONNECT_FALLBACK):
        libs = os.path.join(ctx.cache, "connect", version, "libs")
        reason = install_jars(libs, [
            ("org.apache.kafka", "connect-file", version),
            ("org.apache.kafka", "connect-runtime", version),
            ("org.apache.kafka", "connect-json", version),
            ("org.apache.kafka", "connect-transforms", version),
            # Maven's nearest-wins would pick an SLF4J 1.7 API otherwise.
            ("org.slf4j", "slf4j-api", SLF4J_VERSION),
            ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ], os.path.join(ctx.cache, "connect", "mvn-%s.log" % version))
        if not reason:
            break
        log("  Kafka Connect %s: %s" % (version, reason))
    else:
        raise Skip(reason)
    name = "peer-bench-%s" % ctx.run_id
    group = "connect-" + name  # a sink connector's consumer group
    worker = """bootstrap.servers={bootstrap}
key.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
offset.storage.file.filename={run}/connect.offsets
# A sink task commits offsets (after flushing the file) every this many ms;
# the default (60 s) would dominate a short run.
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:{port}
# Find plugins through their ServiceLoader manifests (connect-file, the SMTs
# and converters have them) instead of scanning every class on the classpath.
plugin.discovery=service_load
consumer.auto.offset.reset=earliest
""".format(bootstrap=ctx.bootstrap, run=run_dir, port=free_port())
    connector = """name={name}
connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector
tasks.max=1
topics={topic}
file={out}/connect.txt
transforms=mask
transforms.mask.type=org.apache.kafka.connect.transforms.MaskField$Value
transforms.mask.fields=card_number
transforms.mask.replacement=************
""".format(name=name, topic=ctx.topic, out=out_dir)
    write(os.path.join(run_dir, "worker.properties"), worker)
    write(os.path.join(run_dir, "connector.properties"), connector)
    write(os.path.join(run_dir, "log4j2.properties"), LOG4J2_WARN)
    argv = ["java"] + JAVA_HEAP + [
        "-Dlog4j2.configurationFile=" + os.path.join(run_dir, "log4j2.properties"),
        "-cp", os.path.join(libs, "*"), "org.apache.kafka.connect.cli.ConnectStandalone",
        os.path.join(run_dir, "worker.properties"), os.path.join(run_dir, "connector.properties")]
    note = ("standalone, FileStreamSink: one unrolled file of Java Map.toString() lines "
            "(JsonConverter, schemaless); MaskField replaces the whole field; offsets flushed every 1 s; "
            "plugin.discovery=service_load, -Xmx1g")
    if version != KAFKA_VERSION:
        note += "; %s because connect-file %s is not published" % (version, KAFKA_VERSION)
    label = "Kafka Connect %s standalone → FileStreamSink" % version
    return argv, group, note, label


# name -> (label, setup(ctx, run_dir, out_dir), regex a masked sample line must match or None)
TOOLS = {
    "librdkafka": ("librdkafka consume loop (Python confluent-kafka, no processing)",
                   lambda c, r, o: setup_worker("librdkafka", c, r, o), None),
    "sluice": ("Sluice, no plugin → files",
               lambda c, r, o: setup_sluice(False, c, r, o), None),
    "sluice-mask": ("Sluice + mask.wasm → files",
                    lambda c, r, o: setup_sluice(True, c, r, o),
                    re.compile(rb'"card_number":"\*{12}\d{4}"')),
    "python": ("Python confluent-kafka pipeline → files",
               lambda c, r, o: setup_worker("python", c, r, o),
               re.compile(rb'"card_number":"\*{12}\d{4}"')),
    "flume": ("Apache Flume %s → file_roll" % FLUME_VERSION, setup_flume,
              re.compile(rb'"card_number":"\*{12}\d{4}"')),
    "connect": ("Kafka Connect %s standalone → FileStreamSink" % KAFKA_VERSION, setup_connect,
                re.compile(rb"card_number=\*{12}[,}]")),
}


# --------------------------------------------------------------------------
# Running one tool.
# --------------------------------------------------------------------------


def run_tool(name, ctx, kafka, end, n):
    label, setup, masked_sample = TOOLS[name]
    run_dir = os.path.join(ctx.args.run_dir, name)
    out_dir = os.path.join(run_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    row = {"name": name, "label": label, "note": "", "warn": []}
    log("[%s] preparing" % name)
    try:
        argv, group, row["note"], *label = setup(ctx, run_dir, out_dir)
        row["label"] = label[0] if label else row["label"]
    except Skip as e:
        row["skip"] = str(e)
        log("[%s] skipped: %s" % (name, e))
        return row

    log_path = os.path.join(run_dir, "tool.log")
    log("[%s] running (log: %s)" % (name, log_path))
    timeout = ctx.args.timeout or 120 + n / 4000
    with open(log_path, "wb") as tool_log:
        t0 = time.monotonic()
        proc = Child(argv, run_dir, tool_log)
    done_at = sample = None
    try:
        offsets_at = None
        last_count = 0.0
        while time.monotonic() - t0 < timeout:
            if proc.exited():
                row["warn"].append("exited early (rc %s)" % proc.proc.returncode)
                break
            now = time.monotonic()
            if offsets_at is None:
                try:
                    committed = kafka.committed(group, ctx.topic)
                except Exception as e:  # the group may not exist yet
                    committed = {}
                    if ctx.args.verbose:
                        log("  offsets: %s" % e)
                if all(committed.get(p, -1) >= end[p] for p in end):
                    offsets_at = now
            if offsets_at is not None:
                # Offsets are at the end; the data must be on disk too.
                if name == "librdkafka":  # writes nothing
                    done_at = offsets_at
                elif now - last_count >= 0.5:
                    last_count = now
                    if count_lines(out_dir) >= n:
                        done_at = now
                if done_at is not None:
                    sample = sample_tree(proc.pid)
                    break
                if now - offsets_at > 120:
                    row["warn"].append("offsets at the end but output short after 120 s")
                    break
            time.sleep(0.25)
        else:
            row["warn"].append("timed out after %d s" % timeout)
    finally:
        proc.stop()
    if done_at is None:
        row["error"] = "; ".join(row["warn"]) or "did not finish"
        with open(log_path, "rb") as f:
            tail = f.read()[-1500:].decode(errors="replace")
        log("[%s] FAILED: %s\n  log tail:\n%s" % (name, row["error"], tail))
        return row

    wall = done_at - t0
    cpu, hwm = sample
    row.update(wall=wall, eps=n / wall, cpu_per_m=cpu / n * 1e6, rss_mib=hwm / 1048576)

    if name != "librdkafka":
        lines, unmasked, bad = scan_output(out_dir, masked_sample)
        if lines != n:
            row["warn"].append("output has %d lines, expected %d" % (lines, n))
        if masked_sample is not None:
            if unmasked:
                row["warn"].append("%d unmasked card numbers" % unmasked)
            if bad:
                row["warn"].append("%d of the first 1000 lines not masked as expected" % bad)
        row["check"] = "%d lines, %d unmasked" % (lines, unmasked) if masked_sample else "%d lines" % lines
    else:
        row["check"] = "no output (baseline)"
    if not ctx.args.keep_output:
        shutil.rmtree(out_dir, ignore_errors=True)
    log("[%s] %d events in %.1f s: %.0f events/s, %.2f CPU s per M events, peak RSS %.0f MiB; %s%s"
        % (name, n, wall, row["eps"], row["cpu_per_m"], row["rss_mib"], row["check"],
           "; WARNING: " + "; ".join(row["warn"]) if row["warn"] else ""))
    return row


# --------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------


def machine():
    model, cpus = "unknown CPU", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "CPU(s)":
                cpus = int(value.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return "%s, %s cores" % (model, cpus)


def report(rows, n, avg_size, load):
    today = datetime.date.today().isoformat()
    out = ["", "### Peer benchmark: %s, %s" % (machine(), today), "",
           "%d events (~%.0f bytes of JSON each) on a 2-partition topic of a local single-node "
           "Apache Kafka %s; each tool consumes from the earliest offset with a new group, masks "
           "`card_number` to its last 4 digits and writes newline-delimited files. events/s = events "
           "/ wall time from process start until the group's committed offsets reach the end offsets "
           "(and the output holds every event); CPU and peak RSS of the tool's process tree at that "
           "moment (broker excluded). Load average at start: %s." % (n, avg_size, KAFKA_VERSION, load),
           "",
           "| pipeline | events/s | CPU s per M events | peak RSS (MiB) | notes |",
           "|---|---:|---:|---:|---|"]
    for r in rows:
        if "skip" in r:
            out.append("| %s | — | — | — | skipped: %s |" % (r["label"], r["skip"]))
        elif "error" in r:
            out.append("| %s | — | — | — | FAILED: %s |" % (r["label"], r["error"]))
        else:
            note = r["note"]
            if r["warn"]:
                note = "**WARNING: %s**; %s" % ("; ".join(r["warn"]), note)
            out.append("| %s | %s | %.2f | %.0f | %s |" % (
                r["label"], "{:,}".format(round(r["eps"])).replace(",", " "),
                r["cpu_per_m"], r["rss_mib"], note))
    log("\n".join(out))


# --------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------


def parse_only(value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    for v in names:
        if v not in TOOLS:
            raise argparse.ArgumentTypeError("unknown tool %r (known: %s)" % (v, ", ".join(TOOL_ORDER)))
    return names


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        p = argparse.ArgumentParser(prog="peer_bench.py worker")
        p.add_argument("kind", choices=["python", "librdkafka"])
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--group", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--out", required=True)
        run_worker(p.parse_args(sys.argv[2:]))
        return 0

    p = argparse.ArgumentParser(
        prog="scripts/peer-bench.sh",
        description="Run the same Kafka -> masked files job with several tools and print a Markdown table.")
    p.add_argument("--events", type=int, default=1000000, help="events to produce (default 1 000 000)")
    p.add_argument("--only", type=parse_only, action="append", default=[],
                   help="run only these tools (comma-separated, repeatable): " + ", ".join(TOOL_ORDER))
    p.add_argument("--bootstrap", default=os.environ.get("SLUICE_TEST_KAFKA"),
                   help="Kafka bootstrap servers (default $SLUICE_TEST_KAFKA)")
    p.add_argument("--cache", default=os.path.join(
        os.environ.get("SLUICE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sluice"), "peers"),
        help="where jars, the venv and run directories go")
    p.add_argument("--timeout", type=float, default=0, help="seconds per tool (default 120 + events/4000)")
    p.add_argument("--sluice-roll-idle", default="1s",
                   help="roll_idle of Sluice's object_store sink (default 1s; '' for none). Sluice commits "
                        "an offset once the file holding it is complete, so without it the last files "
                        "wait for roll_interval (10 s) before the run counts as done; the other tools "
                        "commit once data is written to an open file")
    p.add_argument("--keep-output", action="store_true", help="keep each tool's output files")
    p.add_argument("--keep-topic", action="store_true", help="do not delete the benchmark topic")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if not args.bootstrap:
        p.error("no broker: set SLUICE_TEST_KAFKA or pass --bootstrap")
    if args.events < 1:
        p.error("--events must be at least 1")
    selected = [t for t in TOOL_ORDER if not args.only or t in sum(args.only, [])]

    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    args.cache = os.path.abspath(args.cache)
    args.run_dir = os.path.join(args.cache, "runs", run_id)
    os.makedirs(args.run_dir)
    log("peer benchmark %s: %s on %s, %d events; run directory %s"
        % (run_id, ", ".join(selected), args.bootstrap, args.events, args.run_dir))

    load = "%.2f %.2f %.2f" % os.getloadavg()
    kafka = Kafka(args.bootstrap)
    topic = "peer-bench-" + run_id
    kafka.create_topic(topic)
    rows = []
    try:
        t = time.monotonic()
        avg_size = kafka.produce(topic, args.events)
        end = kafka.end_offsets(topic)
        if sum(end.values()) != args.events:
            raise RuntimeError("the topic holds %d events, expected %d" % (sum(end.values()), args.events))
        log("produced %d events (avg %.0f bytes) to %s in %.1f s; end offsets %s"
            % (args.events, avg_size, topic, time.monotonic() - t, end))
        ctx = Ctx(args, topic, run_id)
        for name in selected:
            rows.append(run_tool(name, ctx, kafka, end, args.events))
    finally:
        if not args.keep_topic:
            kafka.delete_topic(topic)
    report(rows, args.events, avg_size, load)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
