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

import { keep } from '../../guest-sdk/js/sluice.js';

const MAX_FIELDS = 64;
const MAX_NESTING = 128;
const KEYS = ['fields', 'patterns', 'keep_last', 'mask_char'];

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

/** Called once by the SDK with the plugin's config table. */
export function configure(raw) {
  const config = { trie: null, patterns: [], keepLast: 4, maskChar: '*' };
  let fields = [];
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
  // The paths as a trie. A level is a prototype-less object mapping a key,
  // quoted as in the body ('"card"'), to { terminal, next } where `terminal`
  // says a path ends there and `next` is the level below (null if none).
  const root = Object.create(null);
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
      let child = level[key];
      if (child === undefined) child = level[key] = { terminal: false, next: null };
      if (i === path.length - 1) child.terminal = true;
      else level = child.next ??= Object.create(null);
    });
  }
  if (fields.length > 0) {
    config.trie = root;
    // A body can only match if it holds a first key as a plain JSON string,
    // or escapes (which may spell one).
    const keys = Object.keys(root).map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    config.quick = new RegExp(`\\\\|${keys.join('|')}`);
  }
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
// native built-in doing a whole body at once, so the usual path is: JSON.parse
// validates, one `split` cuts the body into strings and brackets, and a loop
// over those pieces follows the key paths. When JSON.parse refuses a body with
// escapes (the Rust scanner accepts any `\x` escape and decodes values later),
// a token-by-token scanner decides instead.

const STRING = 1;
const NUMBER = 2;
const LITERAL = 3;
const PUNCT = 4;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function wellFormed(s) {
  return typeof s.isWellFormed === 'function' ? s.isWellFormed() : !LONE_SURROGATE.test(s);
}

/** The trie entry of the key token `token` (quotes included) in `level`, or undefined; null for an invalid key. */
function child(level, token) {
  if (token.indexOf('\\') < 0) return level[token];
  let key;
  try {
    key = JSON.parse(token);
  } catch {
    return null;
  }
  if (!wellFormed(key)) return null; // a lone surrogate escape is invalid
  return level[`"${key}"`];
}

const PIECES = /("(?:[^"\\]|\\[\s\S])*"|[{}[\]])/;
const NUMBERS = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/g;
const KEY_GAP = /^[ \t\n\r]*:/;
const BLANK = /^[ \t\n\r]*$/;

/**
 * The walk over a body JSON.parse accepted. `parts` alternates gaps (blanks,
 * `:` and `,`, numbers, true/false/null) and tokens (strings and brackets).
 */
function walk(body, trie) {
  const parts = body.split(PIECES);
  const n = parts.length;
  const edits = [];
  // The enclosing containers: level of live paths, masked, is an object.
  const levels = [];
  const maskeds = [];
  const objects = [];
  let depth = 0;
  let level = trie; // paths live for the keys of the current container
  let masked = false; // the current container is inside a masked value
  let inObject = false;
  let valueLevel = trie; // the same for the value coming next
  let valueMasked = false;
  let pos = 0;
  for (let i = 0; ; i += 2) {
    const gap = parts[i];
    if (valueMasked && gap.length > 0) {
      // Numbers are the only values in a gap that get masked.
      NUMBERS.lastIndex = 0;
      let m;
      while ((m = NUMBERS.exec(gap)) !== null) edits.push(pos + m.index, pos + m.index + m[0].length, NUMBER);
    }
    pos += gap.length;
    if (i + 1 >= n) return edits;
    const token = parts[i + 1];
    const start = pos;
    pos += token.length;
    if (token === '{' || token === '[') {
      // A value inside more than MAX_NESTING containers makes the body invalid.
      if (depth > MAX_NESTING) return null;
      levels[depth] = level;
      maskeds[depth] = masked;
      objects[depth] = inObject;
      depth++;
      if (depth > MAX_NESTING && !(BLANK.test(parts[i + 2]) && (parts[i + 3] === '}' || parts[i + 3] === ']'))) {
        return null;
      }
      level = valueLevel;
      masked = valueMasked;
      inObject = token === '{';
      if (inObject) {
        valueLevel = null;
        valueMasked = false;
      }
    } else if (token === '}' || token === ']') {
      depth--;
      level = levels[depth];
      masked = maskeds[depth];
      inObject = objects[depth];
      valueLevel = inObject ? null : level;
      valueMasked = inObject ? false : masked;
    } else if (inObject && KEY_GAP.test(parts[i + 2])) {
      // A key: which paths go on below it, and whether one ends here.
      if (masked || level === null) {
        valueLevel = null;
        valueMasked = masked;
      } else {
        const entry = child(level, token);
        if (entry === null) return null;
        valueLevel = entry === undefined ? null : entry.next;
        valueMasked = entry !== undefined && entry.terminal;
      }
    } else {
      if (valueMasked) edits.push(start, pos, STRING);
      if (inObject) {
        valueLevel = null;
        valueMasked = false;
      }
    }
  }
}

// The token-by-token scanner, for bodies with escapes JSON.parse refuses.
const TOKEN = /("(?:[^"\\\x00-\x1f]|\\[\s\S])*")|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(true|false|null)|([{}[\]:,])/y;

let src = '';
let pos = 0;
let tokenType = 0;
let tokenStart = 0;
let edits = [];

function ws() {
  let c = src.charCodeAt(pos);
  while (c === 32 || c === 9 || c === 10 || c === 13) c = src.charCodeAt(++pos);
}

/** Reads the next token; false at the end or on bytes that start no token. */
function next() {
  ws();
  TOKEN.lastIndex = pos;
  const m = TOKEN.exec(src);
  if (m === null) return false;
  tokenStart = pos;
  pos = TOKEN.lastIndex;
  tokenType = m[1] !== undefined ? STRING : m[2] !== undefined ? NUMBER : m[3] !== undefined ? LITERAL : PUNCT;
  return true;
}

/** One value; `level`: trie level of the paths still live, `masked`: inside a match. */
function value(level, masked, nesting) {
  if (nesting > MAX_NESTING || !next()) return false;
  switch (tokenType) {
    case STRING:
    case NUMBER:
      if (masked) edits.push(tokenStart, pos, tokenType);
      return true;
    case LITERAL:
      return true;
    default: {
      const c = src.charCodeAt(tokenStart);
      if (c === 123) return object(level, masked, nesting + 1);
      if (c === 91) return array(level, masked, nesting + 1);
      return false;
    }
  }
}

function object(level, masked, nesting) {
  ws();
  if (src.charCodeAt(pos) === 125) {
    pos++;
    return true;
  }
  for (;;) {
    if (!next() || tokenType !== STRING) return false;
    let childLevel = null;
    let childMasked = masked;
    if (!masked && level !== null) {
      const entry = child(level, src.slice(tokenStart, pos));
      if (entry === null) return false;
      if (entry !== undefined) {
        childMasked = entry.terminal;
        childLevel = entry.next;
      }
    }
    if (!next() || tokenType !== PUNCT || src.charCodeAt(tokenStart) !== 58) return false;
    if (!value(childLevel, childMasked, nesting)) return false;
    if (!next() || tokenType !== PUNCT) return false;
    const c = src.charCodeAt(tokenStart);
    if (c === 125) return true;
    if (c !== 44) return false;
  }
}

function array(level, masked, nesting) {
  ws();
  if (src.charCodeAt(pos) === 93) {
    pos++;
    return true;
  }
  for (;;) {
    if (!value(level, masked, nesting)) return false;
    if (!next() || tokenType !== PUNCT) return false;
    const c = src.charCodeAt(tokenStart);
    if (c === 93) return true;
    if (c !== 44) return false;
  }
}

function scan(body, trie) {
  src = body;
  pos = 0;
  edits = [];
  const ok = value(trie, false, 0);
  if (ok) ws();
  const found = ok && pos === body.length ? edits : null;
  src = '';
  return found;
}

/** Flat [start, end, type] triples of the values to mask, or null if `body` is not one JSON document. */
function findFields(body, trie) {
  try {
    JSON.parse(body);
  } catch {
    return body.indexOf('\\') >= 0 ? scan(body, trie) : null;
  }
  return walk(body, trie);
}

/** `body` with the JSON values at `spans` replaced by masked strings. */
function applyEdits(body, spans, config) {
  let out = '';
  let at = 0;
  for (let i = 0; i < spans.length; i += 3) {
    const start = spans[i];
    const end = spans[i + 1];
    let text = body.slice(start, end);
    if (spans[i + 2] === STRING) {
      try {
        text = JSON.parse(text);
      } catch {
        text = '';
      }
      if (!wellFormed(text)) text = ''; // a lone surrogate escape is invalid
    }
    out += body.slice(at, start) + JSON.stringify(maskStr(text, config));
    at = end;
  }
  return out + body.slice(at);
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

/** Masks the configured values of one event. */
export function process(event, config) {
  const text = event.text({ strict: true });
  if (text === null) {
    // Not UTF-8: not JSON either, so only `patterns` apply.
    if (config.patterns.length > 0) {
      const masked = maskPatternsBytes(event.body, config);
      if (masked !== null) event.setBody(masked);
    }
    return keep();
  }
  let body = null;
  if (config.trie !== null && config.quick.test(text)) {
    const spans = findFields(text, config.trie);
    if (spans !== null && spans.length > 0) body = applyEdits(text, spans, config);
  }
  if (config.patterns.length > 0) {
    const masked = maskPatterns(body ?? text, config);
    if (masked !== null) body = masked;
  }
  if (body !== null) event.setBody(body);
  return keep();
}
