//go:build !dev

package main

import "errors"

// runDev is in the development build only (dev.go, go build -tags dev): the production binary does not
// link envtest or the local control plane.
func runDev([]string) error {
	return errors.New("the local control plane is in the development build only: run 'make dev' (it builds bin/keysmith-dev with -tags dev)")
}
