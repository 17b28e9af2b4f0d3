// Package config embeds the generated CRDs and the samples, so that `keysmith dev` and the test suites
// install exactly what `make manifests` produced.
package config

import (
	"embed"
)

// CRDs holds config/crd/bases.
//
//go:embed crd/bases/*.yaml
var CRDs embed.FS

// Samples holds config/samples.
//
//go:embed samples/*.yaml
var Samples embed.FS
