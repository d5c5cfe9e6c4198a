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
  on_unparseable
             "dead-letter" or "pass": what happens to a body `fields` cannot
             read (not UTF-8, not one JSON document, a bad escape, or nested
             deeper than 128 levels). Default "dead-letter" when `fields` is
             set, so that a card number is never passed on in clear; "pass"
             lets it through with only `patterns` applied. A JSON scalar
             (`42`, `"text"`) is a document with no fields: it passes.
"""

import json
import re

from sluice_plugin import dead_letter, keep

MAX_FIELDS = 64
MAX_NESTING = 128
KEYS = ("fields", "patterns", "keep_last", "mask_char", "on_unparseable")
POLICIES = ("dead-letter", "pass")
# The dead-letter reason of a body `fields` cannot read: the same in every
# language's `mask` (the golden files hold it).
UNPARSEABLE = (
    "mask: body is not a JSON document (or nests deeper than 128 levels); "
    "its fields cannot be masked"
)

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
    __slots__ = (
        "trie", "quick_keys", "patterns", "keep_last", "mask_char", "mask_json", "dead_letter",
    )  # fmt: skip

    def __init__(self):
        self.trie = None  # {key: (children, terminal)}
        self.quick_keys = ()
        self.patterns = []
        self.keep_last = 4
        self.mask_char = "*"
        self.mask_json = "*"  # the masking character as written in a JSON string
        self.dead_letter = False  # whether a body `fields` cannot read is dead-lettered


def _policy(value):
    """`on_unparseable`, as serde reads the Rust plugin's enum."""
    if not isinstance(value, str):
        raise ValueError(
            f"on_unparseable: invalid type: {_describe(value)}, expected enum OnUnparseable"
        )
    if value not in POLICIES:
        raise ValueError(
            f"on_unparseable: unknown variant `{value}`, expected `dead-letter` or `pass`"
        )
    return value


def configure(raw):
    """Called once by the SDK with the plugin's config table."""
    config = Config()
    fields = []
    policy = None  # unset: decided by whether `fields` is
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
        elif key == "on_unparseable":
            # null is "unset", as for the Rust plugin's Option.
            policy = None if value is None else _policy(value)
        else:
            expected = ", ".join(f"`{k}`" for k in KEYS)
            raise ValueError(f"unknown field `{key}`, expected one of {expected}")
    if not fields and not config.patterns:
        raise ValueError(
            "nothing to mask: set `fields` (JSON keys) or `patterns` (regexes), or both"
        )
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"`fields` has {len(fields)} entries; at most {MAX_FIELDS} are supported")
    # The paths as a trie of levels: a level maps a key, quoted as in a body
    # ('"card"'), to [next level (a dict, empty if none), path ends here].
    root = {}
    for field in fields:
        path = field.split(".")
        if "" in path:
            raise ValueError(
                f"`fields` entry {json.dumps(field, ensure_ascii=False)} has an empty segment; "
                "write keys as `a` or `a.b`"
            )
        level = root
        for i, segment in enumerate(path):
            entry = level.setdefault(f'"{segment}"', [{}, False])
            if i == len(path) - 1:
                entry[1] = True
            level = entry[0]
    if fields:
        config.trie = root
        # Fail closed by default: a body whose fields cannot be found must not
        # go on with them in clear.
        config.dead_letter = policy != "pass"
        # A body can only match if it holds a first key as a plain JSON string
        # (or escapes, which may spell one).
        config.quick_keys = tuple(root)
    config.mask_json = json.dumps(config.mask_char, ensure_ascii=False)[1:-1]
    return config


# ---------------------------------------------------------------------------
# Masking


def _mask_str(value, config):
    """`value` masked, keeping its last `keep_last` characters."""
    n = len(value)
    hidden = n if n <= config.keep_last else n - config.keep_last
    return config.mask_char * hidden + value[hidden:]


# Finding the values to mask. The rules are those of the Rust plugin's
# validating scanner (plugins/mask/src/json.rs): the body must be one JSON
# document (nested at most 128 deep, every escape valid, no lone surrogate),
# and the spans of the masked strings and numbers are found so that the body
# can be edited in place.
#
# Python code is slow per step and native calls are not, so json.loads
# validates, one regex split cuts the body into strings, brackets and commas,
# and a loop over those pieces follows the key paths. json.loads refuses what
# the Rust scanner refuses (an unknown escape such as `\q` included) but for
# two things: a lone surrogate escape, which one regex looks for, and nesting
# deeper than 128, which the walk counts.

_STRING, _NUMBER = 1, 2


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# parse_int=str: the digits are not converted, so a long integer is no error
# (Python refuses int() of more than 4300 digits; JSON does not).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=str)


def _valid_json(text):
    try:
        _DECODER.decode(text)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError
        return False
    return True


# The escapes of a body, in order (so that in `\\ud800` the escape is `\\`):
# group 1 is set for a surrogate escape that is not the first half of a pair.
_ESCAPES = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.S,
)


def _lone_surrogate(text):
    """Whether `text`, valid JSON, escapes a lone surrogate: json.loads
    accepts one, but it is no character and JSON (and the Rust scanner)
    refuses it."""
    return "\\u" in text and any(m.group(1) for m in _ESCAPES.finditer(text))


def _entry(level, token):
    """The trie entry of key `token` (quotes included) in `level`, or None."""
    if "\\" in token:
        # Escapes may spell a key: compare it decoded (the body is valid JSON).
        token = f'"{json.loads(token)}"'
    return level.get(token)


_PIECES = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],])', re.S)
_NUMBERS = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_BLANK = " \t\n\r"


def _walk(text, trie):
    """The walk over a body json.loads accepted, so its structure is sound.
    `parts` alternates gaps (blanks, ':', numbers, literals) and tokens
    (strings, brackets, commas). None past MAX_NESTING."""
    parts = _PIECES.split(text)
    edits = []
    stack = []  # (level, masked, in_object) of the enclosing containers
    level, masked, in_object, expect_key = trie, False, False, False
    value_level, value_masked = trie, False  # the same for the next value
    n = len(parts)
    for i in range(1, n, 2):
        token = parts[i]
        c = token[0]
        if c == '"':
            if expect_key:
                # Which paths go on below this key, and whether one ends here.
                expect_key = False
                if masked or not level:
                    value_level, value_masked = None, masked
                else:
                    entry = _entry(level, token)
                    if entry is None:
                        value_level, value_masked = None, False
                    else:
                        value_level, value_masked = entry
            else:
                if value_masked:
                    # Offsets are only worked out for the values to mask.
                    start = sum(map(len, parts[:i]))
                    edits.append((start, start + len(token), _STRING))
                if in_object:
                    value_level, value_masked = None, False
        elif c == "{" or c == "[":
            # A value inside more than MAX_NESTING containers makes the body invalid.
            if len(stack) > MAX_NESTING:
                return None
            stack.append((level, masked, in_object))
            if len(stack) > MAX_NESTING and not (
                parts[i + 1].strip(_BLANK) == "" and parts[i + 2] in ("}", "]")
            ):
                return None
            level, masked, in_object = value_level, value_masked, c == "{"
            expect_key = in_object
            if in_object:
                value_level, value_masked = None, False
        elif c == "}" or c == "]":
            level, masked, in_object = stack.pop()
            expect_key = False
            if in_object:
                value_level, value_masked = None, False
            else:
                value_level, value_masked = level, masked
        else:  # ,
            expect_key = in_object
        if value_masked and parts[i + 1]:
            # Numbers are the only values in a gap that get masked.
            gap = parts[i + 1]
            for m in _NUMBERS.finditer(gap):
                start = sum(map(len, parts[: i + 1]))
                edits.append((start + m.start(), start + m.end(), _NUMBER))
                if in_object:
                    value_level, value_masked = None, False
    return edits


def find_fields(text, trie):
    """(start, end, kind) of the values to mask, or None if `text` is not one JSON document."""
    if not _valid_json(text) or _lone_surrogate(text):
        return None
    return _walk(text, trie)


def is_document(text):
    """Whether find_fields reads `text` at all, for a body in which no key can
    match: the walk then only counts nesting, which cannot pass the limit in a
    body with fewer brackets than that."""
    if text.count("{") + text.count("[") > MAX_NESTING:
        return find_fields(text, {}) is not None
    return _valid_json(text) and not _lone_surrogate(text)


def _apply_edits(text, edits, config):
    out = []
    at = 0
    keep_last = config.keep_last
    for start, end, kind in edits:
        out.append(text[at:start])
        at = end
        if kind == _STRING:
            start += 1
            end -= 1
            if "\\" in text[start:end]:
                try:
                    value = json.loads(text[start - 1 : end + 1])
                    value.encode("utf-8")  # a lone surrogate escape is invalid
                except ValueError:
                    value = ""
                out.append(json.dumps(_mask_str(value, config), ensure_ascii=False))
                continue
        # Without escapes, the characters of the value are those written.
        n = end - start
        hidden = n if n <= keep_last else n - keep_last
        out.append('"' + config.mask_json * hidden + text[start + hidden : end] + '"')
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


def _fields(text, config):
    """The edits of `fields` in `text` (maybe none), or None if it is not one
    JSON document."""
    if "\\" in text or any(k in text for k in config.quick_keys):
        return find_fields(text, config.trie)
    # No key can match (a key is written as is or spelled with escapes).
    # Whether the body is a document then only matters to dead-letter it.
    if config.dead_letter and not is_document(text):
        return None
    return []


def process(event, config):
    """Masks the configured values of one event."""
    text = event.text(strict=True)
    if text is None:
        # Not UTF-8: not JSON either, so `fields` cannot apply; only
        # `patterns` do, if the body passes.
        if config.dead_letter:
            return dead_letter(UNPARSEABLE)
        if config.patterns:
            masked = _mask_patterns_bytes(event.body, config)
            if masked is not None:
                event.set_body(masked)
        return keep()
    body = None
    if config.trie is not None:
        edits = _fields(text, config)
        if edits is None:
            if config.dead_letter:
                # The original event goes to the dead-letter channel:
                # `patterns` would change nothing there.
                return dead_letter(UNPARSEABLE)
        elif edits:
            body = _apply_edits(text, edits, config)
    if config.patterns:
        masked = _mask_patterns(body if body is not None else text, config)
        if masked is not None:
            body = masked
    if body is not None:
        event.set_body(body)
    return keep()
