// process.go: the export of the Go `mask` example plugin: the `process` function of
// the WIT interface sluice:plugin/intercept, called by the bindings that
// `wit-bindgen go` generates (wit_exports.go). It converts between the generated
// types and the sluice helper (guest-sdk/go) and runs the masker (mask.go).
// Build: examples/go-mask/build.sh -> target/examples/go-mask.wasm
package export_sluice_plugin_intercept

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"sluice"
	"wit_component/sluice_plugin_host"
	"wit_component/sluice_plugin_types"
)

type result = witTypes.Result[sluice_plugin_types.BatchResult, sluice_plugin_types.PluginError]

var (
	m         *masker
	configErr error
)

// Process masks one batch. The configuration is read from the host on the first
// non-empty batch; a configuration error fails every batch the same way.
func Process(b sluice_plugin_types.Batch) result {
	batch := sluice.Batch{Data: b.Data, Index: b.Index}
	if batch.Len() > 0 && m == nil && configErr == nil {
		cfg, err := parseConfig(sluice_plugin_host.Config())
		if err != nil {
			configErr = err
		} else {
			m = &masker{cfg: cfg}
		}
	}
	if batch.Len() > 0 && configErr != nil {
		return witTypes.Err[sluice_plugin_types.BatchResult](sluice_plugin_types.PluginError{Message: configErr.Error()})
	}
	res, err := sluice.Run(batch, func(e sluice.Event, r *sluice.Result) error { return m.handle(e, r) })
	if err != nil {
		return witTypes.Err[sluice_plugin_types.BatchResult](sluice_plugin_types.PluginError{Message: err.Error()})
	}
	return witTypes.Ok[sluice_plugin_types.BatchResult, sluice_plugin_types.PluginError](sluice_plugin_types.BatchResult{
		Outcomes:     res.Outcomes,
		Replacements: sluice_plugin_types.Batch{Data: res.Replacements.Data, Index: res.Replacements.Index},
		Labels:       res.Labels,
	})
}
