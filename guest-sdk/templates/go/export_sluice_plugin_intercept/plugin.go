// plugin.go: the {{name}} interceptor plugin for Sluice, in Go.
// Adds the header `processed-by: {{name}}` to every event (outcome modify) and drops
// events whose body is exactly `drop me` (outcome drop).
// Build: ./build.sh -> {{name}}.wasm; test: see README.md.
//
// The package name and the Process signature are fixed by the bindings that
// `wit-bindgen go` generates for the WIT interface sluice:plugin/intercept.
package export_sluice_plugin_intercept

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"sluice" // sdk/: reads the flat batch, builds the result
	"wit_component/sluice_plugin_types"
)

type (
	batchResult = sluice_plugin_types.BatchResult
	pluginError = sluice_plugin_types.PluginError
)

var processedBy = []byte("{{name}}")

// handle decides what happens to one event.
func handle(e sluice.Event, r *sluice.Result) error {
	if string(e.Body()) == "drop me" {
		r.Drop()
		return nil
	}
	d := sluice.NewDraft(e)
	d.SetHeader("processed-by", processedBy)
	r.Modify(d)
	return nil // an error fails the whole batch
}

// Process is called by the host once per batch.
func Process(b sluice_plugin_types.Batch) witTypes.Result[batchResult, pluginError] {
	res, err := sluice.Run(sluice.Batch{Data: b.Data, Index: b.Index}, handle)
	if err != nil {
		return witTypes.Err[batchResult](pluginError{Message: err.Error()})
	}
	return witTypes.Ok[batchResult, pluginError](batchResult{
		Outcomes:     res.Outcomes,
		Replacements: sluice_plugin_types.Batch{Data: res.Replacements.Data, Index: res.Replacements.Index},
		Labels:       res.Labels,
	})
}
