"""sluice_plugin: the Sluice guest SDK for Python plugins (componentize-py).

A plugin is a module with one function, called once per event::

    from sluice_plugin import keep, drop

    def process(event, config):
        if event.body == b"drop me":
            return drop()
        event.set_header("seen-by", config.get("name", "me"))
        return keep()  # a changed event is sent on as a `modify`

and optionally ``configure(raw)``, called once with the plugin's ``config``
table (a dict parsed from JSON) before the first event; what it returns is the
``config`` argument of ``process`` (by default the dict itself). Raising in
``configure`` fails the batch with "invalid plugin config: <message>"; raising
in ``process`` fails the batch with the exception's message.

Build with ``sdk/componentize.sh`` (see there): it generates the
componentize-py bindings (package ``wit_world``) into a build directory and an
entry module whose export class (``Intercept``, ``Decode`` or ``Route``) comes
from :func:`exports_for`. Authors never see the flat batch (``wit/types.wit``
documents the layout): this module decodes it into :class:`Event` objects and
encodes the per-event outcomes into the ``batch-result``.

componentize-py maps ``list<u8>`` to ``bytes`` and ``list<u32>`` to a ``list``
of ``int``; an export returning ``result<T, E>`` returns ``T`` and raises
``componentize_py_types.Err(E)`` for the error, which :func:`exports_for` does
for every failure. A replacement's origin topic is written empty: the host
keeps the original's.
"""

import json
import struct

STRIDE = 13
"""32-bit words per event in a batch index."""

_OUTCOME_STRIDE = 3
_NONE = 0xFFFFFFFF

_KEEP = 0
_DROP = 1
_MODIFY = 2
_ROUTE_TO = 3
_DEAD_LETTER = 4

_U32 = struct.Struct("<I")


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


# ---------------------------------------------------------------------------
# Outcomes


class Outcome:
    """What happens to one event; build it with the functions below."""

    __slots__ = ("kind", "label", "event")

    def __init__(self, kind, label=None, event=None):
        self.kind = kind
        self.label = label
        self.event = event

    def __repr__(self):
        names = ["keep", "drop", "modify", "route_to", "dead_letter"]
        return f"Outcome({names[self.kind]}, label={self.label!r})"


_KEEP_OUTCOME = Outcome(_KEEP)
_DROP_OUTCOME = Outcome(_DROP)


def keep():
    """Pass the event on: unchanged, or as changed through the Event setters."""
    return _KEEP_OUTCOME


def drop():
    """Discard the event on purpose (counted by the host)."""
    return _DROP_OUTCOME


def modify(event):
    """Pass on ``event`` instead of the original.

    ``event`` is the :class:`Event` given to ``process`` (after its setters),
    or a dict with any of ``body``, ``key``, ``headers`` (list of (name, value)
    or dict) and ``timestamp``; missing fields are the original's.
    """
    if event is None:
        raise TypeError("modify(event) needs the new version of the event")
    return Outcome(_MODIFY, None, event)


def route_to(label, event=None):
    """Send the event to the channel ``label`` of the source; with ``event``,
    send that version (as for :func:`modify`), otherwise the event as changed
    through its setters."""
    return Outcome(_ROUTE_TO, str(label), event)


def dead_letter(reason):
    """Send the original event to the dead-letter channel with ``reason``."""
    return Outcome(_DEAD_LETTER, str(reason))


# ---------------------------------------------------------------------------
# Events


class BatchFormatError(Exception):
    """The batch does not follow the flat encoding."""


def _decode_headers(data, off, length):
    out = []
    end = off + length
    i = off
    while i < end:
        if end - i < 4:
            raise BatchFormatError("reading batch: header block truncated in a length")
        (n,) = _U32.unpack_from(data, i)
        i += 4
        if end - i < n:
            raise BatchFormatError("reading batch: header block truncated")
        name = data[i : i + n].decode("utf-8", "replace")
        i += n
        if end - i < 4:
            raise BatchFormatError("reading batch: header block truncated in a length")
        (m,) = _U32.unpack_from(data, i)
        i += 4
        if end - i < m:
            raise BatchFormatError("reading batch: header block truncated")
        out.append((name, data[i : i + m]))
        i += m
    return out


class Event:
    """One event of a batch. Fields are decoded when first read.

    ``body``, ``key`` and header values are ``bytes``; :meth:`text` and
    :meth:`header` give strings.
    """

    __slots__ = (
        "_data", "_w", "_index", "_body", "_key", "_headers", "_headers_set", "_timestamp", "modified",
    )  # fmt: skip

    def __init__(self, data, index, i):
        self._data = data
        self._index = index
        self._w = i * STRIDE
        self._body = None
        self._key = False  # False: not read yet (None means "no key")
        self._headers = None
        self._headers_set = False  # changed by a setter, not only read
        self._timestamp = False
        self.modified = False  # whether a setter changed the event

    # -- reading

    @property
    def body(self):
        """The payload (bytes)."""
        if self._body is None:
            ix = self._index
            off = ix[self._w + 2]
            self._body = self._data[off : off + ix[self._w + 3]]
        return self._body

    @body.setter
    def body(self, value):
        self.set_body(value)

    def text(self, strict=False):
        """The payload as a string; invalid UTF-8 becomes U+FFFD, or with
        ``strict=True`` makes the result ``None``."""
        if strict:
            try:
                return self.body.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The payload parsed as JSON (raises if it is not JSON)."""
        return json.loads(self.body)

    @property
    def key(self):
        """The key (bytes), or ``None`` when the event has none."""
        if self._key is False:
            ix = self._index
            w = self._w
            n = ix[w + 1]
            self._key = None if n == _NONE else self._data[ix[w] : ix[w] + n]
        return self._key

    @key.setter
    def key(self, value):
        self.set_key(value)

    @property
    def headers(self):
        """All headers in order, as a list of (name, bytes value); names may repeat."""
        if self._headers is None:
            ix = self._index
            w = self._w
            self._headers = _decode_headers(self._data, ix[w + 4], ix[w + 5]) if ix[w + 5] else []
        return self._headers

    def header(self, name):
        """The value of the first header ``name`` as a string, or ``None``."""
        value = self.header_bytes(name)
        return None if value is None else value.decode("utf-8", "replace")

    def header_bytes(self, name):
        """The value of the first header ``name`` as bytes, or ``None``."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def topic(self):
        """The origin topic."""
        ix = self._index
        w = self._w
        return self._data[ix[w + 6] : ix[w + 6] + ix[w + 7]].decode("utf-8", "replace")

    @property
    def partition(self):
        """The origin partition."""
        p = self._index[self._w + 8]
        return p - (1 << 32) if p >= 1 << 31 else p

    @property
    def offset(self):
        """The origin offset."""
        return _i64(self._index[self._w + 9], self._index[self._w + 10])

    @property
    def timestamp(self):
        """Milliseconds since the Unix epoch, or ``None`` when unknown."""
        if self._timestamp is not False:
            return self._timestamp
        ms = _i64(self._index[self._w + 11], self._index[self._w + 12])
        return None if ms == -1 else ms

    @timestamp.setter
    def timestamp(self, ms):
        self.set_timestamp(ms)

    # -- changing

    def set_body(self, value):
        """Replaces the payload (a str is encoded as UTF-8)."""
        self._body = _to_bytes(value)
        self.modified = True
        return self

    def set_key(self, value):
        """Replaces the key; ``None`` removes it."""
        self._key = None if value is None else _to_bytes(value)
        self.modified = True
        return self

    def set_header(self, name, value):
        """Sets header ``name``: replaces the first header of that name
        (removing later ones of the same name) or appends a new one."""
        value = _to_bytes(value)
        headers = self.headers
        out = []
        found = False
        for n, v in headers:
            if n == name:
                if not found:
                    out.append((name, value))
                    found = True
            else:
                out.append((n, v))
        if not found:
            out.append((name, value))
        self._headers = out
        self._headers_set = True
        self.modified = True
        return self

    def add_header(self, name, value):
        """Appends a header, keeping any of the same name."""
        self._headers = self.headers + [(name, _to_bytes(value))]
        self._headers_set = True
        self.modified = True
        return self

    def remove_header(self, name):
        """Removes every header ``name``; returns whether there was one."""
        if self.header_bytes(name) is None:
            return False
        self._headers = [(n, v) for n, v in self.headers if n != name]
        self._headers_set = True
        self.modified = True
        return True

    def set_timestamp(self, ms):
        """Sets the timestamp (ms since the Unix epoch; ``None`` for unknown)."""
        self._timestamp = None if ms is None else int(ms)
        self.modified = True
        return self

    def to_dict(self):
        """A plain view, for logging and tests."""
        return {
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "body": self.text(),
            "headers": {n: v.decode("utf-8", "replace") for n, v in self.headers},
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
        }

    def __repr__(self):
        return f"Event({self.to_dict()!r})"


def _i64(low, high):
    value = low | (high << 32)
    return value - (1 << 64) if value >= 1 << 63 else value


# ---------------------------------------------------------------------------
# Encoding the result


class _BatchWriter:
    """A growing flat batch (the ``replacements`` of a result)."""

    __slots__ = ("data", "index")

    def __init__(self):
        self.data = bytearray()
        self.index = []

    def push(self, orig, version):
        data = self.data
        ix = orig._index
        w = orig._w
        src = orig._data
        if isinstance(version, Event):
            key = version.key
            body = version.body
            headers = version._headers if version._headers_set else None
            timestamp = version._timestamp
        else:
            key = orig.key
            body = orig.body
            headers = None
            timestamp = False
            if "key" in version:
                key = None if version["key"] is None else _to_bytes(version["key"])
            if "body" in version:
                body = _to_bytes(version["body"])
            if "headers" in version:
                h = version["headers"]
                headers = list(h.items()) if isinstance(h, dict) else list(h)
            if "timestamp" in version:
                timestamp = version["timestamp"]
        at = len(self.index) // STRIDE
        if key is None:
            key_at, key_len = 0, _NONE
        else:
            key_at, key_len = len(data), len(key)
            data += key
        body_at = len(data)
        data += body
        headers_at = len(data)
        if headers is None:
            # Unchanged: copy the encoded block as it is.
            data += src[ix[w + 4] : ix[w + 4] + ix[w + 5]]
        else:
            for name, value in headers:
                name = name.encode("utf-8")
                value = _to_bytes(value)
                data += _U32.pack(len(name))
                data += name
                data += _U32.pack(len(value))
                data += value
        if timestamp is False:
            ts_low, ts_high = ix[w + 11], ix[w + 12]
        else:
            ms = (-1 if timestamp is None else int(timestamp)) & 0xFFFFFFFFFFFFFFFF
            ts_low, ts_high = ms & 0xFFFFFFFF, ms >> 32
        # The host keeps the original's origin (topic, partition, offset) for
        # a replacement and ignores these: the topic is left empty.
        self.index += (
            key_at, key_len, body_at, len(body), headers_at, len(data) - headers_at,
            0, 0, ix[w + 8], ix[w + 9], ix[w + 10], ts_low, ts_high,
        )  # fmt: skip
        return at


# ---------------------------------------------------------------------------
# The per-batch driver


class PluginError(Exception):
    """Raise to fail the whole batch with this message."""


_configured = False
_config = None


def _current_config(configure):
    global _configured, _config
    if _configured:
        return _config
    from wit_world.imports import host

    try:
        raw = json.loads(host.config())
    except ValueError as e:
        raise PluginError(f"invalid plugin config: not JSON: {e}") from e
    if configure is not None:
        try:
            _config = configure(raw)
        except Exception as e:  # noqa: BLE001 - any failure is a config error
            message = str(e)
            if not message.startswith("invalid plugin config"):
                message = f"invalid plugin config: {message}"
            raise PluginError(message) from e
    else:
        _config = raw
    _configured = True
    return _config


def process_batch(data, index, handler, configure=None):
    """Runs ``handler(event, config)`` over every event of the batch
    ``(data, index)``; returns ``(outcomes, replacements_data,
    replacements_index, labels)``."""
    if len(index) % STRIDE:
        raise PluginError(
            f"reading batch: index holds {len(index)} words, not a multiple of {STRIDE}"
        )
    config = _current_config(configure)
    events = len(index) // STRIDE
    outcomes = [0, 0, _NONE] * events
    replacements = None
    labels = []
    label_ids = {}
    for i in range(events):
        event = Event(data, index, i)
        outcome = handler(event, config)
        if outcome is None:
            outcome = _KEEP_OUTCOME
        try:
            kind = outcome.kind
        except AttributeError:
            raise PluginError(
                f"event {i}: process() returned {outcome!r}; return keep(), drop(), "
                "modify(e), route_to(label) or dead_letter(reason)"
            ) from None
        version = event if event.modified else None
        label = 0
        if kind == _KEEP:
            if version is not None:
                kind = _MODIFY
            else:
                continue  # the default words
        elif kind == _DROP:
            version = None
        elif kind == _MODIFY:
            version = outcome.event
        else:  # route-to, dead-letter
            label = label_ids.get(outcome.label)
            if label is None:
                label = label_ids[outcome.label] = len(labels)
                labels.append(outcome.label)
            if kind == _DEAD_LETTER:
                version = None
            elif outcome.event is not None:
                version = outcome.event
        o = i * _OUTCOME_STRIDE
        outcomes[o] = kind
        outcomes[o + 1] = label
        if version is not None:
            if replacements is None:
                replacements = _BatchWriter()
            outcomes[o + 2] = replacements.push(event, version)
    if replacements is None:
        return outcomes, b"", [], labels
    return outcomes, bytes(replacements.data), replacements.index, labels


_EXPORT_CLASSES = {"interceptor": "Intercept", "decoder": "Decode", "router": "Route"}


def exports_for(plugin, world="interceptor"):
    """The export class of ``world`` (``Intercept``, ``Decode``, ``Route``) for a
    plugin module with ``process(event, config)`` and optionally
    ``configure(raw)``. The generated entry module calls this."""
    from componentize_py_types import Err
    from wit_world.imports import types

    handler = getattr(plugin, "process", None)
    if not callable(handler):
        raise TypeError("the plugin module must define `process(event, config)`")
    configure = getattr(plugin, "configure", None)

    class Export:
        def process(self, batch):
            try:
                outcomes, data, index, labels = process_batch(
                    batch.data, batch.index, handler, configure
                )
            except Exception as e:  # noqa: BLE001 - any failure fails the batch
                raise Err(types.PluginError(message=str(e) or type(e).__name__)) from None
            return types.BatchResult(
                outcomes=outcomes,
                replacements=types.Batch(data=data, index=index),
                labels=labels,
            )

    Export.__name__ = Export.__qualname__ = _EXPORT_CLASSES[world]
    return Export


# ---------------------------------------------------------------------------
# Host services


class _Log:
    """Writes to the host log, tagged with the plugin's name."""

    @staticmethod
    def _write(level, message):
        from wit_world.imports import host

        host.log(getattr(host.Level, level), str(message))

    def trace(self, message):
        self._write("TRACE", message)

    def debug(self, message):
        self._write("DEBUG", message)

    def info(self, message):
        self._write("INFO", message)

    def warn(self, message):
        self._write("WARN", message)

    def error(self, message):
        self._write("ERROR", message)


log = _Log()


def lookup(table, key):
    """The value of ``key`` in lookup table ``table``, or ``None``; raises
    :class:`PluginError` if the table is not granted to the plugin."""
    from componentize_py_types import Err
    from wit_world.imports import lookup as host_lookup

    try:
        return host_lookup.get(table, key)
    except Err as e:
        raise PluginError(f"looking up table `{table}`: {e.value}") from None


def lookup_many(table, keys):
    """The values of many keys of one table at once (``None`` where absent)."""
    from componentize_py_types import Err
    from wit_world.imports import lookup as host_lookup

    try:
        return host_lookup.get_many(table, list(keys))
    except Err as e:
        raise PluginError(f"looking up table `{table}`: {e.value}") from None
