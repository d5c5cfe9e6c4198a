// mask.js: the `mask` interceptor (plugins/mask) written in JavaScript, as an
// example of a Sluice plugin in another language. Build: examples/js-mask/build.sh
// (writes target/examples/js-mask.wasm). Same config and behaviour as the Rust
// plugin; see README.md for the few differences (regex dialect).
//
// Config keys (the `config` table of the plugin):
//   fields     JSON keys or dotted paths to mask (`payment.iban`); arrays are
//              looked through; a key whose value is an object or array masks
//              every string and number inside it. At most 64.
//   patterns   regular expressions (JavaScript syntax, `u` flag) masked wherever
//              they match the raw body, after `fields`.
//   keep_last  characters left visible at the end of a masked value (default 4).
//   mask_char  the replacement character (default "*").
//   on_unparseable  "dead-letter" or "pass": what happens to a body `fields`
//              cannot read (not UTF-8, not one JSON document, or nested deeper
//              than 128 levels). Default "dead-letter" when `fields` is set
//              (a masking stage fails closed rather than pass a card number on
//              in clear), else "pass". With "pass" only `patterns` apply to
//              such a body. A JSON scalar (`42`, `"text"`) is a document with
//              no fields: it passes.

import { deadLetter, keep } from '../../guest-sdk/js/sluice.js';

const MAX_FIELDS = 64;
const MAX_NESTING = 128;
const KEYS = ['fields', 'patterns', 'keep_last', 'mask_char', 'on_unparseable'];
const POLICIES = ['dead-letter', 'pass'];

/** The dead-letter reason, the same in every language's `mask` (the golden files hold it). */
const UNPARSEABLE =
  'mask: body is not a JSON document (or nests deeper than 128 levels); its fields cannot be masked';

// ---------------------------------------------------------------------------
// Configuration: checked once, with serde-like messages naming the key.

/** How serde_json names an unexpected JSON value in an error message. */
function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return `boolean \`${value}\``;
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (typeof value === 'number') {
    return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
  }
  return Array.isArray(value) ? 'sequence' : 'map';
}

function strings(raw, key) {
  const list = raw[key];
  if (!Array.isArray(list)) throw new Error(`${key}: invalid type: ${describe(list)}, expected a sequence`);
  list.forEach((item, i) => {
    if (typeof item !== 'string') {
      throw new Error(`${key}[${i}]: invalid type: ${describe(item)}, expected a string`);
    }
  });
  return list;
}

/** The `on_unparseable` policy, or null for the default. */
function policy(value) {
  // null is the default, as serde reads an absent Option.
  if (value === null) return null;
  const expected = POLICIES.map((p) => `\`${p}\``).join(' or ');
  if (typeof value !== 'string') {
    throw new Error(`on_unparseable: invalid type: ${describe(value)}, expected ${expected}`);
  }
  if (!POLICIES.includes(value)) {
    throw new Error(`on_unparseable: unknown variant \`${value}\`, expected ${expected}`);
  }
  return value;
}

/** Called once by the SDK with the plugin's config table. */
export function configure(raw) {
  const config = {
    trie: null,
    patterns: [],
    keepLast: 4,
    maskChar: '*',
    maskJson: null,
    maskRun: null,
    deadLetter: false,
  };
  let fields = [];
  let onUnparseable = null;
  for (const key of Object.keys(raw)) {
    const value = raw[key];
    switch (key) {
      case 'fields':
        fields = strings(raw, key);
        break;
      case 'patterns':
        config.patterns = strings(raw, key).map((source) => {
          try {
            return new RegExp(source, 'gu');
          } catch (e) {
            throw new Error(`patterns: invalid regex ${JSON.stringify(source)}: ${e.message}`);
          }
        });
        break;
      case 'keep_last':
        if (typeof value !== 'number' || !Number.isInteger(value)) {
          throw new Error(`keep_last: invalid type: ${describe(value)}, expected usize`);
        }
        if (value < 0) throw new Error(`keep_last: invalid value: integer \`${value}\`, expected usize`);
        config.keepLast = value;
        break;
      case 'mask_char':
        if (typeof value !== 'string') {
          throw new Error(`mask_char: invalid type: ${describe(value)}, expected a character`);
        }
        if ([...value].length !== 1) {
          throw new Error(`mask_char: invalid value: string ${JSON.stringify(value)}, expected a character`);
        }
        config.maskChar = value;
        break;
      case 'on_unparseable':
        onUnparseable = policy(value);
        break;
      default:
        throw new Error(
          `unknown field \`${key}\`, expected one of ${KEYS.map((k) => `\`${k}\``).join(', ')}`,
        );
    }
  }
  if (fields.length === 0 && config.patterns.length === 0) {
    throw new Error('nothing to mask: set `fields` (JSON keys) or `patterns` (regexes), or both');
  }
  if (fields.length > MAX_FIELDS) {
    throw new Error(`\`fields\` has ${fields.length} entries; at most ${MAX_FIELDS} are supported`);
  }
  // The paths as a trie of levels. A level maps a key, quoted as in a body
  // ('"card"'), to { terminal, next }: whether a path ends there, and the
  // level below (null if none). `byLen` lists the same entries by key length,
  // so a key in a body is compared without cutting it out of the body.
  const newLevel = () => ({ map: Object.create(null), byLen: [] });
  const root = newLevel();
  for (const field of fields) {
    const path = field.split('.');
    if (path.some((segment) => segment === '')) {
      throw new Error(
        `\`fields\` entry ${JSON.stringify(field)} has an empty segment; write keys as \`a\` or \`a.b\``,
      );
    }
    let level = root;
    path.forEach((segment, i) => {
      const key = `"${segment}"`;
      let entry = level.map[key];
      if (entry === undefined) {
        entry = level.map[key] = { terminal: false, next: null };
        (level.byLen[key.length] ??= []).push(key, entry);
      }
      if (i === path.length - 1) entry.terminal = true;
      else level = entry.next ??= newLevel();
    });
  }
  if (fields.length > 0) config.trie = root;
  // Without `fields` nothing is ever unparseable: patterns read any body.
  config.deadLetter = fields.length > 0 && (onUnparseable ?? 'dead-letter') === 'dead-letter';
  // The masking character as it is written inside a JSON string, in UTF-8.
  config.maskJson = new TextEncoder().encode(JSON.stringify(config.maskChar).slice(1, -1));
  config.maskRun = new Uint8Array(0);
  return config;
}

// ---------------------------------------------------------------------------
// Masking

/** `value` masked, keeping its last `keepLast` characters (code points). */
function maskStr(value, config) {
  const chars = Array.from(value);
  const n = chars.length;
  const hidden = n <= config.keepLast ? n : n - config.keepLast;
  return config.maskChar.repeat(hidden) + chars.slice(hidden).join('');
}

// Finding the values to mask. The rules are those of the Rust plugin's
// validating scanner (plugins/mask/src/json.rs): the body must be one JSON
// document (nested at most 128 deep), and the spans of the masked strings and
// numbers are found so that the body can be edited in place.
//
// StarlingMonkey interprets JavaScript, where every call costs far more than a
// native built-in doing a whole body at once, so: JSON.parse validates, a
// check for escaped lone surrogates (which JSON.parse lets through) completes
// that, and a walk over the characters between strings follows the key paths.
// The Rust scanner refuses exactly what serde_json refuses (bad escapes such
// as `\q`, lone surrogates), so a body JSON.parse refuses is not JSON for it
// either.

const STRING = 1;
const NUMBER = 2;

/**
 * The trie entry of the key whose token (quotes included) is text[start, end)
 * in `level`, or undefined if none. The body is valid JSON, so the token is.
 */
function child(level, text, start, end, escapes) {
  if (escapes) {
    const slash = text.indexOf('\\', start);
    if (slash >= 0 && slash < end) return level.map[`"${JSON.parse(text.slice(start, end))}"`];
  }
  const candidates = level.byLen[end - start];
  if (candidates === undefined) return undefined;
  for (let k = 0; k < candidates.length; k += 2) {
    if (text.startsWith(candidates[k], start)) return candidates[k + 1];
  }
  return undefined;
}

/** Whether the quote at text[q] is escaped. */
function escapedQuote(text, q) {
  let k = q - 1;
  while (text[k] === '\\') k--;
  return (q - 1 - k) % 2 === 1;
}

/** Whether only whitespace stands between text[i] and a closing bracket. */
function closesNext(text, i) {
  let c = text[i];
  while (c === ' ' || c === '\t' || c === '\n' || c === '\r') c = text[++i];
  return c === '}' || c === ']';
}

// Character classes for the walk (characters outside strings are ASCII in a
// valid body): 0 skipped (':', whitespace, letters of true/false/null).
const QUOTE = 1;
const OPEN = 2;
const CLOSE = 3;
const COMMA = 4;
const DIGIT = 5; // or '-': a number starts
const CLASS = new Uint8Array(128);
CLASS[34] = QUOTE;
CLASS[123] = OPEN;
CLASS[91] = OPEN;
CLASS[125] = CLOSE;
CLASS[93] = CLOSE;
CLASS[44] = COMMA;
CLASS[45] = DIGIT;
for (let c = 48; c <= 57; c++) CLASS[c] = DIGIT;
/** Characters that continue a number: digits . e E + - */
const NUMBER_PART = new Uint8Array(128);
for (const c of '0123456789.eE+-') NUMBER_PART[c.charCodeAt(0)] = 1;

// The walk's stacks, reused from body to body: for each enclosing container,
// the level of live paths, whether it is masked, and whether it is an object.
const levels = [];
const maskeds = [];
const objects = [];

/**
 * The walk over a body JSON.parse accepted, so its structure is sound: it
 * looks at the characters between strings one by one and skips over strings
 * with indexOf. Returns the edits, or null past MAX_NESTING.
 */
function walk(text, trie) {
  const n = text.length;
  const escapes = text.indexOf('\\') >= 0;
  const edits = [];
  let depth = 0;
  let level = trie; // paths live for the keys of the current container
  let masked = false; // the current container is inside a masked value
  let inObject = false;
  let expectKey = false;
  let valueLevel = trie; // the same for the value coming next
  let valueMasked = false;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    const k = CLASS[c];
    if (k === 0) {
      i++;
    } else if (k === QUOTE) {
      // A string: a key or a value.
      let end = text.indexOf('"', i + 1);
      if (escapes) while (escapedQuote(text, end)) end = text.indexOf('"', end + 1);
      end++;
      if (expectKey) {
        // Which paths go on below this key, and whether one ends here.
        expectKey = false;
        if (masked || level === null) {
          valueLevel = null;
          valueMasked = masked;
        } else {
          const entry = child(level, text, i, end, escapes);
          valueLevel = entry === undefined ? null : entry.next;
          valueMasked = entry !== undefined && entry.terminal;
        }
        // The ':' usually follows at once: skip it here.
        i = text.charCodeAt(end) === 58 ? end + 1 : end;
      } else {
        if (valueMasked) edits.push(i, end, STRING);
        if (inObject) {
          valueLevel = null;
          valueMasked = false;
        }
        // So does the ',' after a value.
        if (text.charCodeAt(end) === 44) {
          expectKey = inObject;
          i = end + 1;
        } else {
          i = end;
        }
      }
    } else if (k === OPEN) {
      // A value inside more than MAX_NESTING containers makes the body invalid.
      if (depth > MAX_NESTING) return null;
      levels[depth] = level;
      maskeds[depth] = masked;
      objects[depth] = inObject;
      depth++;
      if (depth > MAX_NESTING && !closesNext(text, i + 1)) return null;
      level = valueLevel;
      masked = valueMasked;
      inObject = c === 123;
      expectKey = inObject;
      if (inObject) {
        valueLevel = null;
        valueMasked = false;
      }
      i++;
    } else if (k === CLOSE) {
      depth--;
      level = levels[depth];
      masked = maskeds[depth];
      inObject = objects[depth];
      expectKey = false;
      valueLevel = inObject ? null : level;
      valueMasked = inObject ? false : masked;
      i++;
    } else if (k === COMMA) {
      expectKey = inObject;
      i++;
    } else {
      // A number: masked as a whole, or skipped.
      const start = i;
      i++;
      while (NUMBER_PART[text.charCodeAt(i)] === 1) i++;
      if (valueMasked) {
        edits.push(start, i, NUMBER);
        if (inObject) {
          valueLevel = null;
          valueMasked = false;
        }
      }
    }
  }
  return edits;
}

// In a body JSON.parse accepted every backslash starts a valid escape, so
// escapes matched left to right stay aligned (`\\u` is `\\` then `u`).
const ESCAPE = /\\(?:u([0-9a-fA-F]{4})|[^u])/g;

/**
 * Whether `text`, valid for JSON.parse, escapes a lone surrogate: a high half
 * not followed at once by an escaped low half, or a low half alone. JSON.parse
 * accepts those; the Rust scanner (like serde_json) refuses the body. (A raw
 * surrogate cannot be in text decoded from UTF-8.)
 */
function loneSurrogate(text) {
  if (text.indexOf('\\u') < 0) return false;
  let pairAt = -1; // after a high half: where its low half must start
  ESCAPE.lastIndex = 0;
  let m;
  while ((m = ESCAPE.exec(text)) !== null) {
    const unit = m[1] === undefined ? -1 : parseInt(m[1], 16);
    const low = unit >= 0xdc00 && unit <= 0xdfff;
    if (pairAt >= 0) {
      if (m.index !== pairAt || !low) return true;
      pairAt = -1;
    } else if (low) {
      return true;
    } else if (unit >= 0xd800 && unit <= 0xdbff) {
      pairAt = ESCAPE.lastIndex;
    }
  }
  return pairAt >= 0;
}

/**
 * Flat [start, end, type] triples of the values to mask, or null if `body` is
 * not one JSON document (nested at most MAX_NESTING deep) for the Rust scanner.
 */
function findFields(body, trie) {
  try {
    JSON.parse(body);
  } catch {
    return null;
  }
  return loneSurrogate(body) ? null : walk(body, trie);
}

/** The text a masked JSON string value stands for (its token is valid JSON). */
function decodeString(token) {
  return JSON.parse(token);
}

/** `body` with the JSON values at `spans` replaced by masked strings. */
function applyEdits(body, spans, config) {
  let out = '';
  let at = 0;
  for (let i = 0; i < spans.length; i += 3) {
    const start = spans[i];
    const end = spans[i + 1];
    const raw = body.slice(start, end);
    const text = spans[i + 2] === STRING ? decodeString(raw) : raw;
    out += body.slice(at, start) + JSON.stringify(maskStr(text, config));
    at = end;
  }
  return out + body.slice(at);
}

/** `config.maskJson` repeated at least `count` times. */
function maskRun(config, count) {
  if (config.maskRun.length < count * config.maskJson.length) {
    const run = new Uint8Array(count * 2 * config.maskJson.length);
    for (let k = 0; k < count * 2; k++) run.set(config.maskJson, k * config.maskJson.length);
    config.maskRun = run;
  }
  return config.maskRun;
}

/**
 * The same for an ASCII body without escapes (string offsets are byte
 * offsets, and a value's characters are its bytes), building the new body's
 * bytes directly: no strings are cut or encoded.
 */
function applyEditsAscii(bytes, spans, config) {
  const m = config.maskJson.length;
  const keepLast = config.keepLast;
  let size = bytes.length;
  for (let i = 0; i < spans.length; i += 3) {
    let n = spans[i + 1] - spans[i];
    if (spans[i + 2] === STRING) n -= 2;
    const hidden = n <= keepLast ? n : n - keepLast;
    size += 2 + hidden * (m - 1) + (spans[i + 2] === STRING ? -2 : 0);
  }
  const out = new Uint8Array(size);
  let o = 0;
  let at = 0;
  for (let i = 0; i < spans.length; i += 3) {
    const start = spans[i];
    const end = spans[i + 1];
    out.set(bytes.subarray(at, start), o);
    o += start - at;
    at = end;
    const from = spans[i + 2] === STRING ? start + 1 : start;
    const to = spans[i + 2] === STRING ? end - 1 : end;
    const n = to - from;
    const hidden = n <= keepLast ? n : n - keepLast;
    out[o++] = 34; // "
    out.set(maskRun(config, hidden).subarray(0, hidden * m), o);
    o += hidden * m;
    out.set(bytes.subarray(from + hidden, to), o);
    o += n - hidden;
    out[o++] = 34;
  }
  out.set(bytes.subarray(at), o);
  return out;
}

/** Sorted, merged [start, end) pairs of every non-empty pattern match in `text`. */
function matchRanges(text, patterns) {
  const ranges = [];
  for (const re of patterns) {
    for (const m of text.matchAll(re)) {
      if (m[0].length > 0) ranges.push([m.index, m.index + m[0].length]);
    }
  }
  if (ranges.length === 0) return null;
  // Matches of several patterns may overlap: mask their union.
  ranges.sort((a, b) => a[0] - b[0]);
  const merged = [ranges[0]];
  for (let i = 1; i < ranges.length; i++) {
    const last = merged[merged.length - 1];
    if (ranges[i][0] <= last[1]) last[1] = Math.max(last[1], ranges[i][1]);
    else merged.push(ranges[i]);
  }
  return merged;
}

/** `text` with every pattern match masked; null when nothing matched. */
function maskPatterns(text, config) {
  const ranges = matchRanges(text, config.patterns);
  if (ranges === null) return null;
  let out = '';
  let at = 0;
  for (const [start, end] of ranges) {
    out += text.slice(at, start) + maskStr(text.slice(start, end), config);
    at = end;
  }
  return out + text.slice(at);
}

const lossy = new TextDecoder();
const encoder = new TextEncoder();

/** Patterns over a body that is not UTF-8: matched over its bytes as Latin-1 characters. */
function maskPatternsBytes(bytes, config) {
  let latin1 = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    latin1 += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  }
  const ranges = matchRanges(latin1, config.patterns);
  if (ranges === null) return null;
  const parts = [];
  let size = 0;
  let at = 0;
  for (const [start, end] of ranges) {
    const masked = encoder.encode(maskStr(lossy.decode(bytes.subarray(start, end)), config));
    parts.push(bytes.subarray(at, start), masked);
    size += start - at + masked.length;
    at = end;
  }
  parts.push(bytes.subarray(at));
  size += bytes.length - at;
  const out = new Uint8Array(size);
  let o = 0;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

// The body as text, or null if it is not UTF-8. `ignoreBOM` keeps a leading
// byte-order mark, which the SDK's event.text() drops: the Rust scanner reads
// bytes, so a body starting with one is not JSON, and patterns must not drop it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function bodyText(bytes) {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Masks the configured values of one event. */
export function process(event, config) {
  const bytes = event.body;
  const text = bodyText(bytes);
  if (text === null) {
    // Not UTF-8: not JSON either, so `fields` cannot read it; only `patterns` apply.
    if (config.deadLetter) return deadLetter(UNPARSEABLE);
    if (config.patterns.length > 0) {
      const masked = maskPatternsBytes(bytes, config);
      if (masked !== null) event.setBody(masked);
    }
    return keep();
  }
  let body = null;
  if (config.trie !== null) {
    // Scalars too: only parsing tells `42` (no fields) from `4111 in clear`.
    const spans = findFields(text, config.trie);
    if (spans === null) {
      if (config.deadLetter) return deadLetter(UNPARSEABLE);
    } else if (spans.length > 0) {
      if (bytes.length === text.length && config.patterns.length === 0 && text.indexOf('\\') < 0) {
        event.setBody(applyEditsAscii(bytes, spans, config));
        return keep();
      }
      body = applyEdits(text, spans, config);
    }
  }
  if (config.patterns.length > 0) {
    const masked = maskPatterns(body ?? text, config);
    if (masked !== null) body = masked;
  }
  if (body !== null) event.setBody(body);
  return keep();
}
