// plugin.js: the `{{name}}` Sluice interceptor plugin, in JavaScript.
// Build: ./build.sh (writes {{name}}.wasm). Try it:
//   sluice plugin test {{name}}.wasm --config test/config.toml --input test/input.jsonl
//
// `process` is called once per event; `config` is the plugin's `config` table
// (see sdk/sluice.js for the Event API and the outcomes).

import { drop, modify } from './sdk/sluice.js';

// Optional: check and prepare the config once; what it returns is the
// `config` argument of `process`. A thrown error fails the batch with
// "invalid plugin config: <message>".
export function configure(raw) {
  return raw;
}

export function process(event, config) {
  if (event.text() === 'drop me') {
    return drop();
  }
  event.setHeader('processed-by', '{{name}}');
  // `keep()` would do as well: a changed event is sent on as a `modify`.
  return modify(event);
}
