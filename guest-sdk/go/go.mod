// The Go helper for Sluice plugins (see README.md). Imported as "sluice" through a
// go.mod `replace sluice => <path of this directory>` in the plugin's module.
module sluice

go 1.24
