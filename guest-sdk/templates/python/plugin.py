"""plugin.py: the `{{name}}` Sluice interceptor plugin, in Python.

Build: ./build.sh (writes {{name}}.wasm). Try it:
  sluice plugin test {{name}}.wasm --config test/config.toml --input test/input.jsonl

`process` is called once per event; `config` is the plugin's `config` table
(see sdk/sluice_plugin.py for the Event API and the outcomes).
"""

from sluice_plugin import drop, modify


def configure(raw):
    """Optional: check and prepare the config once; what it returns is the
    `config` argument of `process`. An exception fails the batch with
    "invalid plugin config: <message>"."""
    return raw


def process(event, config):
    if event.body == b"drop me":
        return drop()
    event.set_header("processed-by", "{{name}}")
    # `keep()` would do as well: a changed event is sent on as a `modify`.
    return modify(event)
