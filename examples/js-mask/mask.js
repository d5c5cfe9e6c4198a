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
  // The paths as a trie: node = { children: Map<key, node>, terminal }.
  const root = { children: new Map(), terminal: false };
  const firstKeys = new Set();
  for (const field of fields) {
    const path = field.split('.');
    if (path.some((segment) => segment === '')) {
      throw new Error(
        `\`fields\` entry ${JSON.stringify(field)} has an empty segment; write keys as \`a\` or \`a.b\``,
      );
    }
    firstKeys.add(path[0]);
    let node = root;
    for (const segment of path) {
      let child = node.children.get(segment);
      if (child === undefined) {
        child = { children: new Map(), terminal: false };
        node.children.set(segment, child);
      }
      node = child;
    }
    node.terminal = true;
  }
  if (fields.length > 0) {
    config.trie = root;
    // A body can only match if it holds a first key as a plain JSON string
    // (or has escapes, which may spell one).
    config.quickKeys = [...firstKeys].map((k) => JSON.stringify(k));
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

// A validating JSON scanner over the body string, like plugins/mask/src/json.rs:
// it finds the spans of the values to mask so the body can be edited in place.
// State lives in module variables to keep the hot path free of allocations.
const TOKEN = /("(?:[^"\\\x00-\x1f]|\\[\s\S])*")|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(true|false|null)|([{}[\]:,])/y;
const STRING = 1;
const NUMBER = 2;
const LITERAL = 3;
const PUNCT = 4;

let src = '';
let pos = 0;
let tokenType = 0;
let tokenStart = 0;
let edits = [];

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function wellFormed(s) {
  return typeof s.isWellFormed === 'function' ? s.isWellFormed() : !LONE_SURROGATE.test(s);
}

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

/** One value; `node`: trie node of the paths still live, `masked`: inside a match. */
function value(node, masked, nesting) {
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
      if (c === 123) return object(node, masked, nesting + 1);
      if (c === 91) return array(node, masked, nesting + 1);
      return false;
    }
  }
}

function object(node, masked, nesting) {
  ws();
  if (src.charCodeAt(pos) === 125) {
    pos++;
    return true;
  }
  for (;;) {
    if (!next() || tokenType !== STRING) return false;
    let childNode = null;
    let childMasked = masked;
    if (!masked && node !== null) {
      let key = src.slice(tokenStart + 1, pos - 1);
      if (key.indexOf('\\') >= 0) {
        try {
          key = JSON.parse(src.slice(tokenStart, pos));
        } catch {
          return false;
        }
        if (!wellFormed(key)) return false; // a lone surrogate escape is invalid
      }
      const child = node.children.get(key);
      if (child !== undefined) {
        childMasked = child.terminal;
        if (child.children.size > 0) childNode = child;
      }
    }
    if (!next() || tokenType !== PUNCT || src.charCodeAt(tokenStart) !== 58) return false;
    if (!value(childNode, childMasked, nesting)) return false;
    if (!next() || tokenType !== PUNCT) return false;
    const c = src.charCodeAt(tokenStart);
    if (c === 125) return true;
    if (c !== 44) return false;
  }
}

function array(node, masked, nesting) {
  ws();
  if (src.charCodeAt(pos) === 93) {
    pos++;
    return true;
  }
  for (;;) {
    if (!value(node, masked, nesting)) return false;
    if (!next() || tokenType !== PUNCT) return false;
    const c = src.charCodeAt(tokenStart);
    if (c === 93) return true;
    if (c !== 44) return false;
  }
}

/** Flat [start, end, type] triples of the values to mask, or null if `body` is not one JSON document. */
function findFields(body, trie) {
  src = body;
  pos = 0;
  edits = [];
  const ok = value(trie, false, 0);
  if (ok) ws();
  const found = ok && pos === body.length ? edits : null;
  src = '';
  return found;
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
  if (config.trie !== null && (text.indexOf('\\') >= 0 || config.quickKeys.some((k) => text.indexOf(k) >= 0))) {
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
