"""mask.py: the `mask` interceptor (plugins/mask) written in Python, as an
example of a Sluice plugin in another language. Build: examples/python-mask/build.sh
(writes target/examples/python-mask.wasm). Same config and behaviour as the Rust
plugin; see README.md for the few differences (regex dialect).

Config keys (the `config` table of the plugin):
  fields     JSON keys or dotted paths to mask (`payment.iban`); arrays are
             looked through; a key whose value is an object or array masks
             every string and number inside it. At most 64.
  patterns   regular expressions (Python `re` syntax) masked wherever they
             match the raw body, after `fields`.
  keep_last  characters left visible at the end of a masked value (default 4).
  mask_char  the replacement character (default "*").
"""

import json
import re

from sluice_plugin import keep

MAX_FIELDS = 64
MAX_NESTING = 128
KEYS = ("fields", "patterns", "keep_last", "mask_char")

# ---------------------------------------------------------------------------
# Configuration: checked once, with serde-like messages naming the key.


def _describe(value):
    """How serde_json names an unexpected JSON value in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    return "sequence" if isinstance(value, list) else "map"


def _strings(raw, key):
    items = raw[key]
    if not isinstance(items, list):
        raise ValueError(f"{key}: invalid type: {_describe(items)}, expected a sequence")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"{key}[{i}]: invalid type: {_describe(item)}, expected a string")
    return items


class Config:
    __slots__ = ("trie", "quick_keys", "patterns", "keep_last", "mask_char")

    def __init__(self):
        self.trie = None  # {key: (children, terminal)}
        self.quick_keys = ()
        self.patterns = []
        self.keep_last = 4
        self.mask_char = "*"


def configure(raw):
    """Called once by the SDK with the plugin's config table."""
    config = Config()
    fields = []
    for key, value in raw.items():
        if key == "fields":
            fields = _strings(raw, key)
        elif key == "patterns":
            for source in _strings(raw, key):
                try:
                    config.patterns.append(re.compile(source))
                except re.error as e:
                    raise ValueError(
                        f"patterns: invalid regex {json.dumps(source, ensure_ascii=False)}: {e}"
                    ) from None
        elif key == "keep_last":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"keep_last: invalid type: {_describe(value)}, expected usize")
            if value < 0:
                raise ValueError(f"keep_last: invalid value: integer `{value}`, expected usize")
            config.keep_last = value
        elif key == "mask_char":
            if not isinstance(value, str):
                raise ValueError(f"mask_char: invalid type: {_describe(value)}, expected a character")
            if len(value) != 1:
                raise ValueError(
                    f"mask_char: invalid value: {_describe(value)}, expected a character"
                )
            config.mask_char = value
        else:
            expected = ", ".join(f"`{k}`" for k in KEYS)
            raise ValueError(f"unknown field `{key}`, expected one of {expected}")
    if not fields and not config.patterns:
        raise ValueError(
            "nothing to mask: set `fields` (JSON keys) or `patterns` (regexes), or both"
        )
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"`fields` has {len(fields)} entries; at most {MAX_FIELDS} are supported")
    # The paths as a trie: {key: [children, terminal]}.
    root = {}
    for field in fields:
        path = field.split(".")
        if "" in path:
            raise ValueError(
                f"`fields` entry {json.dumps(field, ensure_ascii=False)} has an empty segment; "
                "write keys as `a` or `a.b`"
            )
        node = root
        for i, segment in enumerate(path):
            child = node.setdefault(segment, [{}, False])
            if i == len(path) - 1:
                child[1] = True
            node = child[0]
    if fields:
        config.trie = root
        # A body can only match if it holds a first key as a plain JSON string
        # (or has escapes, which may spell one).
        config.quick_keys = tuple(json.dumps(k, ensure_ascii=False) for k in root)
    return config


# ---------------------------------------------------------------------------
# Masking


def _mask_str(value, config):
    """`value` masked, keeping its last `keep_last` characters."""
    n = len(value)
    hidden = n if n <= config.keep_last else n - config.keep_last
    return config.mask_char * hidden + value[hidden:]


# A validating JSON scanner, like plugins/mask/src/json.rs: it finds the spans
# of the values to mask so the body can be edited in place. The body is cut
# into tokens by one regex (the group number is the token type; the last group
# catches anything that starts no token), then walked recursively.
_TOKEN = re.compile(
    r'[ \t\n\r]*(?:("(?:[^"\\\x00-\x1f]|\\.)*")'
    r"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    r"|(true|false|null)|([{}\[\]:,])|([^ \t\n\r]))",
    re.S,
)
_STRING, _NUMBER, _LITERAL, _PUNCT = 1, 2, 3, 4


def _value(text, toks, i, node, masked, nesting, edits):
    if nesting > MAX_NESTING or i >= len(toks):
        return -1
    kind, start, end = toks[i]
    if kind == _STRING or kind == _NUMBER:
        if masked:
            edits.append((start, end, kind))
        return i + 1
    if kind == _LITERAL:
        return i + 1
    if kind == _PUNCT:
        c = text[start]
        if c == "{":
            return _object(text, toks, i + 1, node, masked, nesting + 1, edits)
        if c == "[":
            return _array(text, toks, i + 1, node, masked, nesting + 1, edits)
    return -1


def _object(text, toks, i, node, masked, nesting, edits):
    n = len(toks)
    if i < n and toks[i][0] == _PUNCT and text[toks[i][1]] == "}":
        return i + 1
    while i < n:
        kind, start, end = toks[i]
        if kind != _STRING:
            return -1
        child_node, child_masked = None, masked
        if not masked and node is not None:
            key = text[start + 1 : end - 1]
            if "\\" in key:
                try:
                    key = json.loads(text[start:end])
                    key.encode("utf-8")  # a lone surrogate escape is invalid
                except ValueError:
                    return -1
            child = node.get(key)
            if child is not None:
                child_masked = child[1]
                if child[0]:
                    child_node = child[0]
        i += 1
        if i >= n or toks[i][0] != _PUNCT or text[toks[i][1]] != ":":
            return -1
        i = _value(text, toks, i + 1, child_node, child_masked, nesting, edits)
        if i < 0 or i >= n or toks[i][0] != _PUNCT:
            return -1
        c = text[toks[i][1]]
        if c == "}":
            return i + 1
        if c != ",":
            return -1
        i += 1
    return -1


def _array(text, toks, i, node, masked, nesting, edits):
    n = len(toks)
    if i < n and toks[i][0] == _PUNCT and text[toks[i][1]] == "]":
        return i + 1
    while True:
        i = _value(text, toks, i, node, masked, nesting, edits)
        if i < 0 or i >= n or toks[i][0] != _PUNCT:
            return -1
        c = text[toks[i][1]]
        if c == "]":
            return i + 1
        if c != ",":
            return -1
        i += 1


def find_fields(text, trie):
    """(start, end, kind) of the values to mask, or None if `text` is not one JSON document."""
    toks = [(m.lastindex, m.start(m.lastindex), m.end()) for m in _TOKEN.finditer(text)]
    edits = []
    # The tokens cover the text up to trailing whitespace, so walking all of
    # them means the document ends where the text does.
    if _value(text, toks, 0, trie, False, 0, edits) != len(toks):
        return None
    return edits


def _apply_edits(text, edits, config):
    out = []
    at = 0
    for start, end, kind in edits:
        value = text[start:end]
        if kind == _STRING:
            try:
                value = json.loads(value)
                value.encode("utf-8")  # a lone surrogate escape is invalid
            except ValueError:
                value = ""
        out.append(text[at:start])
        out.append(json.dumps(_mask_str(value, config), ensure_ascii=False))
        at = end
    out.append(text[at:])
    return "".join(out)


def _match_ranges(text, patterns):
    """Sorted, merged [start, end] pairs of every non-empty match in `text`."""
    ranges = [m.span() for p in patterns for m in p.finditer(text) if m.end() > m.start()]
    if not ranges:
        return None
    # Matches of several patterns may overlap: mask their union.
    ranges.sort(key=lambda r: r[0])
    merged = [list(ranges[0])]
    for start, end in ranges[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return merged


def _mask_patterns(text, config):
    ranges = _match_ranges(text, config.patterns)
    if ranges is None:
        return None
    out = []
    at = 0
    for start, end in ranges:
        out.append(text[at:start])
        out.append(_mask_str(text[start:end], config))
        at = end
    out.append(text[at:])
    return "".join(out)


def _mask_patterns_bytes(body, config):
    """Patterns over a body that is not UTF-8: matched over its bytes as Latin-1."""
    ranges = _match_ranges(body.decode("latin-1"), config.patterns)
    if ranges is None:
        return None
    out = bytearray()
    at = 0
    for start, end in ranges:
        out += body[at:start]
        out += _mask_str(body[start:end].decode("utf-8", "replace"), config).encode("utf-8")
        at = end
    out += body[at:]
    return bytes(out)


def process(event, config):
    """Masks the configured values of one event."""
    text = event.text(strict=True)
    if text is None:
        # Not UTF-8: not JSON either, so only `patterns` apply.
        if config.patterns:
            masked = _mask_patterns_bytes(event.body, config)
            if masked is not None:
                event.set_body(masked)
        return keep()
    body = None
    if config.trie is not None and ("\\" in text or any(k in text for k in config.quick_keys)):
        edits = find_fields(text, config.trie)
        if edits:
            body = _apply_edits(text, edits, config)
    if config.patterns:
        masked = _mask_patterns(body if body is not None else text, config)
        if masked is not None:
            body = masked
    if body is not None:
        event.set_body(body)
    return keep()
