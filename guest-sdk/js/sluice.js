// sluice.js: the Sluice guest SDK for JavaScript plugins (ES module).
//
// A plugin is an ES module that exports one function, called once per event:
//
//   import { keep, drop } from './sdk/sluice.js';
//
//   export function process(event, config) {
//     if (event.text() === 'drop me') return drop();
//     event.setHeader('seen-by', config.name ?? 'me');
//     return keep(); // a changed event is sent on as a `modify`
//   }
//
// and optionally `configure(raw)`, called once with the plugin's `config`
// table (a parsed JSON object) before the first event; what it returns is the
// `config` argument of `process` (by default the table itself). Throwing in
// `configure` fails the batch with "invalid plugin config: <message>"; throwing
// in `process` fails the batch with the error's message.
//
// Build with `node sdk/componentize.mjs` (see componentize.mjs): it wraps the
// module so that it exports the world's interface (`intercept`, `decode` or
// `route`) through `exportsFor` below. Authors never see the flat batch: this
// module decodes it (wit/types.wit documents the layout) into `Event` objects
// and encodes the per-event outcomes into the `batch-result`.
//
// componentize-js maps `list<u8>` to Uint8Array and `list<u32>` to Uint32Array
// in both directions (typed-array views are accepted for results), so a batch
// crosses the boundary as two bulk copies. Its mapping of
// `result<batch-result, plugin-error>`: returning a value is `ok`; a thrown
// value is `err`, read as the `plugin-error` record (its `message`);
// `exportsFor` turns every failure into such a throw.
//
// Speed: componentize-js embeds StarlingMonkey (SpiderMonkey), which interprets
// JavaScript; every call and allocation costs on the order of a microsecond and
// regular expressions are slow. This module keeps the per-event path lean
// (lazy fields, typed arrays, no per-event regex); plugin code should do the
// same: prefer JSON.parse, indexOf and typed arrays to per-character loops.
// A replacement's origin topic is written empty: the host keeps the original's.

import { config as hostConfig, log as hostLog } from 'sluice:plugin/host@0.1.0';
import { get as hostGet, getMany as hostGetMany } from 'sluice:plugin/lookup@0.1.0';

/** 32-bit words per event in a batch index. */
export const STRIDE = 13;
/** Words per event in `batch-result.outcomes`. */
const OUTCOME_STRIDE = 3;
const NONE = 0xffffffff;

const KEEP = 0;
const DROP = 1;
const MODIFY = 2;
const ROUTE_TO = 3;
const DEAD_LETTER = 4;

const utf8 = new TextDecoder('utf-8');
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`expected a string or bytes, got ${typeof value}`);
}

// ---------------------------------------------------------------------------
// Outcomes

const KEEP_OUTCOME = Object.freeze({ kind: KEEP });
const DROP_OUTCOME = Object.freeze({ kind: DROP });

/** Pass the event on: unchanged, or as changed through the `Event` setters. */
export function keep() {
  return KEEP_OUTCOME;
}

/** Discard the event on purpose (counted by the host). */
export function drop() {
  return DROP_OUTCOME;
}

/**
 * Pass on `event` instead of the original: the `Event` given to `process`
 * (after its setters), or a plain object with any of `body`, `key`, `headers`
 * (array of [name, value] or object) and `timestamp`; missing fields are the
 * original's.
 */
export function modify(event) {
  if (event === undefined || event === null) {
    throw new TypeError('modify(event) needs the new version of the event');
  }
  return { kind: MODIFY, event };
}

/**
 * Send the event to the channel `label` of the source; with `event`, send that
 * version (as for `modify`), otherwise the event as changed through its setters.
 */
export function routeTo(label, event) {
  return { kind: ROUTE_TO, label: String(label), event };
}

/** Send the original event to the dead-letter channel with `reason`. */
export function deadLetter(reason) {
  return { kind: DEAD_LETTER, label: String(reason) };
}

// ---------------------------------------------------------------------------
// Events

/** Decodes a header block into [name, Uint8Array value] pairs. */
function decodeHeaders(data, off, len) {
  const out = [];
  const end = off + len;
  let i = off;
  while (i < end) {
    if (end - i < 4) throw new Error('reading batch: header block truncated in a length');
    const n = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] * 0x1000000);
    i += 4;
    if (end - i < n) throw new Error('reading batch: header block truncated');
    const name = utf8.decode(data.subarray(i, i + n));
    i += n;
    if (end - i < 4) throw new Error('reading batch: header block truncated in a length');
    const m = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] * 0x1000000);
    i += 4;
    if (end - i < m) throw new Error('reading batch: header block truncated');
    out.push([name, data.subarray(i, i + m)]);
    i += m;
  }
  return out;
}

/** Changes made through the setters; `undefined` fields are unchanged. */
class Changes {
  constructor() {
    this.modified = false;
    this.key = undefined;
    this.headers = undefined;
    /** Headers decoded for reading only: the encoded block can be copied as is. */
    this.headersRead = false;
    this.timestamp = undefined;
  }
}

/**
 * One event of a batch, valid during the `process` call it is given to.
 * Reading is lazy: a field is decoded when first used. Byte fields (`body`,
 * `key`, header values) are Uint8Array views into the batch; copy them to keep
 * them past the call.
 *
 * (StarlingMonkey interprets JavaScript and every allocation counts, so an
 * Event holds few fields and changes live in a separate object.)
 */
export class Event {
  constructor(data, index, i) {
    this._data = data;
    this._index = index;
    this._w = i * STRIDE;
    this._body = undefined;
    this._text = undefined;
    this._changes = null;
  }

  _change() {
    if (this._changes === null) this._changes = new Changes();
    return this._changes;
  }

  /** The payload, as a Uint8Array. */
  get body() {
    if (this._body === undefined) {
      const ix = this._index;
      const w = this._w;
      const off = ix[w + 2];
      this._body = this._data.subarray(off, off + ix[w + 3]);
    }
    return this._body;
  }

  set body(value) {
    this.setBody(value);
  }

  /**
   * The payload as a string. Invalid UTF-8 becomes U+FFFD, or with
   * `{ strict: true }` makes the result `null`.
   */
  text(options) {
    if (options !== undefined && options.strict) {
      try {
        // Valid UTF-8 decodes the same either way: cache it for text().
        this._text = utf8Strict.decode(this.body);
        return this._text;
      } catch {
        return null;
      }
    }
    if (this._text === undefined) this._text = utf8.decode(this.body);
    return this._text;
  }

  /** The payload parsed as JSON (throws if it is not JSON). */
  json() {
    return JSON.parse(this.text());
  }

  /** The key as a Uint8Array, or `null` when the event has none. */
  get key() {
    if (this._changes !== null && this._changes.key !== undefined) return this._changes.key;
    const ix = this._index;
    const w = this._w;
    const len = ix[w + 1];
    return len === NONE ? null : this._data.subarray(ix[w], ix[w] + len);
  }

  set key(value) {
    this.setKey(value);
  }

  /** The key as a string, or `null`. */
  keyText() {
    const key = this.key;
    return key === null ? null : utf8.decode(key);
  }

  /** All headers in order, as [name, Uint8Array value] pairs; names may repeat. */
  get headers() {
    const changes = this._change();
    if (changes.headers === undefined) {
      const ix = this._index;
      const w = this._w;
      changes.headers = ix[w + 5] === 0 ? [] : decodeHeaders(this._data, ix[w + 4], ix[w + 5]);
      changes.headersRead = true;
    }
    return changes.headers;
  }

  /** The value of the first header `name` as a string, or `undefined`. */
  header(name) {
    const value = this.headerBytes(name);
    return value === undefined ? undefined : utf8.decode(value);
  }

  /** The value of the first header `name` as a Uint8Array, or `undefined`. */
  headerBytes(name) {
    const headers = this.headers;
    for (let i = 0; i < headers.length; i++) {
      if (headers[i][0] === name) return headers[i][1];
    }
    return undefined;
  }

  /** The origin topic. */
  get topic() {
    const ix = this._index;
    const w = this._w;
    return utf8.decode(this._data.subarray(ix[w + 6], ix[w + 6] + ix[w + 7]));
  }

  /** The origin partition. */
  get partition() {
    return this._index[this._w + 8] | 0;
  }

  /** The origin offset (a Number: exact below 2^53). */
  get offset() {
    const ix = this._index;
    return (ix[this._w + 10] | 0) * 0x100000000 + ix[this._w + 9];
  }

  /** Milliseconds since the Unix epoch, or `null` when unknown. */
  get timestamp() {
    if (this._changes !== null && this._changes.timestamp !== undefined) return this._changes.timestamp;
    const ix = this._index;
    const ms = (ix[this._w + 12] | 0) * 0x100000000 + ix[this._w + 11];
    return ms === -1 ? null : ms;
  }

  set timestamp(ms) {
    this.setTimestamp(ms);
  }

  /** Whether a setter changed the event. */
  get modified() {
    return this._changes !== null && this._changes.modified === true;
  }

  /** Replaces the payload (a string is encoded as UTF-8). */
  setBody(value) {
    this._body = toBytes(value);
    this._text = typeof value === 'string' ? value : undefined;
    this._change().modified = true;
    return this;
  }

  /** Replaces the key; `null` removes it. */
  setKey(value) {
    const changes = this._change();
    changes.key = value === null || value === undefined ? null : toBytes(value);
    changes.modified = true;
    return this;
  }

  /**
   * Sets header `name`: replaces the first header of that name (removing any
   * later ones of the same name) or appends a new one.
   */
  setHeader(name, value) {
    const bytes = toBytes(value);
    const headers = this.headers.slice();
    const first = headers.findIndex((h) => h[0] === name);
    const changes = this._change();
    if (first < 0) {
      headers.push([name, bytes]);
      changes.headers = headers;
    } else {
      headers[first] = [name, bytes];
      changes.headers = headers.filter((h, i) => i <= first || h[0] !== name);
    }
    changes.headersRead = false;
    changes.modified = true;
    return this;
  }

  /** Appends a header, keeping any of the same name. */
  addHeader(name, value) {
    const headers = this.headers.concat([[name, toBytes(value)]]);
    const changes = this._change();
    changes.headers = headers;
    changes.headersRead = false;
    changes.modified = true;
    return this;
  }

  /** Removes every header `name`; returns whether there was one. */
  removeHeader(name) {
    if (this.headerBytes(name) === undefined) return false;
    const changes = this._change();
    changes.headers = this.headers.filter((h) => h[0] !== name);
    changes.headersRead = false;
    changes.modified = true;
    return true;
  }

  /** Sets the timestamp (ms since the Unix epoch; `null` for unknown). */
  setTimestamp(ms) {
    const changes = this._change();
    changes.timestamp = ms === null || ms === undefined ? null : Math.trunc(ms);
    changes.modified = true;
    return this;
  }

  /** A plain-object view, for logging and tests. */
  toJSON() {
    return {
      key: this.keyText(),
      body: this.text(),
      headers: Object.fromEntries(this.headers.map(([n, v]) => [n, utf8.decode(v)])),
      topic: this.topic,
      partition: this.partition,
      offset: this.offset,
      timestamp: this.timestamp,
    };
  }
}

// ---------------------------------------------------------------------------
// Encoding the result

/** A growable flat batch (the `replacements` of a result). */
class BatchWriter {
  constructor(events, capacity) {
    this.data = new Uint8Array(capacity > 64 ? capacity : 64);
    this.len = 0;
    this.index = new Uint32Array(events * STRIDE);
    this.count = 0;
  }

  reserve(n) {
    if (this.len + n <= this.data.length) return;
    let size = this.data.length * 2;
    while (size < this.len + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.data.subarray(0, this.len));
    this.data = grown;
  }

  bytes(b) {
    this.reserve(b.length);
    this.data.set(b, this.len);
    this.len += b.length;
  }

  /** Copies src[off, off + n). */
  copy(src, off, n) {
    if (n === 0) return;
    this.reserve(n);
    this.data.set(src.subarray(off, off + n), this.len);
    this.len += n;
  }

  u32(n) {
    this.reserve(4);
    const d = this.data;
    const i = this.len;
    d[i] = n & 0xff;
    d[i + 1] = (n >>> 8) & 0xff;
    d[i + 2] = (n >>> 16) & 0xff;
    d[i + 3] = (n >>> 24) & 0xff;
    this.len = i + 4;
  }

  /**
   * Appends `version` of the event `orig`: `orig` itself after its setters,
   * or a plain object (see `modify`). Returns its index in the batch.
   */
  push(orig, version) {
    const ix = orig._index;
    const w = orig._w;
    const src = orig._data;
    const out = this.index;
    const at = this.count * STRIDE;
    // undefined: as in the original.
    let key;
    let body;
    let headers;
    let timestamp;
    if (version instanceof Event) {
      body = version._body;
      const changes = version._changes;
      if (changes !== null) {
        key = changes.key;
        // Headers only read are copied as the encoded block.
        if (!changes.headersRead) headers = changes.headers;
        timestamp = changes.timestamp;
      }
    } else {
      if ('key' in version) key = version.key === null || version.key === undefined ? null : toBytes(version.key);
      if ('body' in version) body = toBytes(version.body);
      if ('headers' in version) {
        headers = Array.isArray(version.headers) ? version.headers : Object.entries(version.headers);
      }
      if ('timestamp' in version) timestamp = version.timestamp === undefined ? null : version.timestamp;
    }
    if (key === undefined) {
      out[at] = this.len;
      out[at + 1] = ix[w + 1];
      if (ix[w + 1] !== NONE) this.copy(src, ix[w], ix[w + 1]);
    } else if (key === null) {
      out[at] = 0;
      out[at + 1] = NONE;
    } else {
      out[at] = this.len;
      out[at + 1] = key.length;
      this.bytes(key);
    }
    out[at + 2] = this.len;
    if (body === undefined) {
      out[at + 3] = ix[w + 3];
      this.copy(src, ix[w + 2], ix[w + 3]);
    } else {
      out[at + 3] = body.length;
      this.bytes(body);
    }
    const hstart = this.len;
    if (headers === undefined) {
      this.copy(src, ix[w + 4], ix[w + 5]);
    } else {
      for (let i = 0; i < headers.length; i++) {
        const name = encoder.encode(String(headers[i][0]));
        const value = toBytes(headers[i][1]);
        this.u32(name.length);
        this.bytes(name);
        this.u32(value.length);
        this.bytes(value);
      }
    }
    out[at + 4] = hstart;
    out[at + 5] = this.len - hstart;
    // The host keeps the original's origin (topic, partition, offset) for a
    // replacement and ignores these: the topic is left empty.
    out[at + 6] = 0;
    out[at + 7] = 0;
    out[at + 8] = ix[w + 8];
    out[at + 9] = ix[w + 9];
    out[at + 10] = ix[w + 10];
    if (timestamp === undefined) {
      out[at + 11] = ix[w + 11];
      out[at + 12] = ix[w + 12];
    } else if (timestamp === null) {
      out[at + 11] = NONE;
      out[at + 12] = NONE;
    } else {
      out[at + 11] = timestamp >>> 0;
      out[at + 12] = Math.floor(timestamp / 0x100000000) >>> 0;
    }
    return this.count++;
  }
}

// ---------------------------------------------------------------------------
// The per-batch driver

let configured = false;
let configValue;

function currentConfig(configure) {
  if (configured) return configValue;
  let raw;
  try {
    raw = JSON.parse(hostConfig());
  } catch (e) {
    throw new Error(`invalid plugin config: not JSON: ${e.message}`);
  }
  if (configure !== undefined) {
    try {
      configValue = configure(raw);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(
        message.startsWith('invalid plugin config') ? message : `invalid plugin config: ${message}`,
      );
    }
  } else {
    configValue = raw;
  }
  configured = true;
  return configValue;
}

/**
 * Runs `handler(event, config)` over every event of a `batch`
 * (`{ data: Uint8Array, index: Uint32Array }`) and returns the `batch-result`.
 */
export function processBatch(batch, handler, configure) {
  const data = batch.data;
  const index = batch.index;
  if (index.length % STRIDE !== 0) {
    throw new Error(`reading batch: index holds ${index.length} words, not a multiple of ${STRIDE}`);
  }
  const config = currentConfig(configure);
  const events = index.length / STRIDE;
  const outcomes = new Uint32Array(events * OUTCOME_STRIDE);
  let replacements = null;
  const labels = [];
  let labelIds = null;
  for (let i = 0; i < events; i++) {
    const event = new Event(data, index, i);
    const outcome = handler(event, config);
    let kind = outcome === undefined ? KEEP : outcome.kind;
    let label = 0;
    let replacement = NONE;
    let version = event._changes !== null && event._changes.modified === true ? event : null;
    switch (kind) {
      case KEEP:
        if (version !== null) kind = MODIFY;
        break;
      case DROP:
        version = null;
        break;
      case MODIFY:
        version = outcome.event;
        break;
      case ROUTE_TO:
      case DEAD_LETTER:
        if (labelIds === null) labelIds = new Map();
        label = labelIds.get(outcome.label);
        if (label === undefined) {
          label = labels.length;
          labels.push(outcome.label);
          labelIds.set(outcome.label, label);
        }
        if (kind === DEAD_LETTER) version = null;
        else if (outcome.event !== undefined) version = outcome.event;
        break;
      default:
        throw new Error(
          `event ${i}: process() returned ${JSON.stringify(outcome)}; return keep(), drop(), modify(e), routeTo(label) or deadLetter(reason)`,
        );
    }
    if (version !== null) {
      if (replacements === null) replacements = new BatchWriter(events, data.length);
      replacement = replacements.push(event, version);
    }
    const o = i * OUTCOME_STRIDE;
    outcomes[o] = kind;
    outcomes[o + 1] = label;
    outcomes[o + 2] = replacement;
  }
  return {
    outcomes,
    replacements:
      replacements === null
        ? { data: new Uint8Array(0), index: new Uint32Array(0) }
        : {
            data: replacements.data.subarray(0, replacements.len),
            index: replacements.index.subarray(0, replacements.count * STRIDE),
          },
    labels,
  };
}

/**
 * The export object for a world (`{ process(batch) }`) from a plugin module
 * exporting `process(event, config)` and optionally `configure(raw)`.
 * componentize.mjs calls this; a failure becomes the WIT `plugin-error`.
 */
export function exportsFor(plugin) {
  const handler = plugin.process;
  if (typeof handler !== 'function') {
    throw new TypeError('the plugin module must export `function process(event, config)`');
  }
  const configure = typeof plugin.configure === 'function' ? plugin.configure : undefined;
  return {
    process(batch) {
      try {
        return processBatch(batch, handler, configure);
      } catch (e) {
        // componentize-js maps a thrown value to the `err` case of the
        // result, reading the `plugin-error` record's `message` from it.
        throw { message: e instanceof Error ? e.message : String(e) };
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Host services

/** Writes to the host log, tagged with the plugin's name. */
export const log = {
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

function lookupError(table, e) {
  const reason = e && e.payload !== undefined ? e.payload : e;
  return new Error(`looking up table \`${table}\`: ${reason && reason.message ? reason.message : reason}`);
}

/** The value of `key` in lookup table `table`, or `undefined`; throws if the table is not granted. */
export function lookup(table, key) {
  try {
    const value = hostGet(table, key);
    return value === null ? undefined : value;
  } catch (e) {
    throw lookupError(table, e);
  }
}

/** The values of many keys of one table at once (`undefined` where absent). */
export function lookupMany(table, keys) {
  try {
    return hostGetMany(table, keys).map((v) => (v === null ? undefined : v));
  } catch (e) {
    throw lookupError(table, e);
  }
}
