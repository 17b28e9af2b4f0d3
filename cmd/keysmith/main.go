// Command keysmith is keysmith's single binary.
//
//	keysmith manager   run the operator and the verifier against the cluster in KUBECONFIG (or in-cluster)
//	keysmith verifier  run only the verification service, for a dedicated, horizontally scaled Deployment
//	keysmith dev       run the operator on a local control plane, with the samples applied (in the
//	                   development build only: go build -tags dev, as make dev does; the production binary
//	                   links no envtest)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

const usage = `keysmith manages API keys as Kubernetes resources.

Usage:
  keysmith manager [flags]   run the operator and the verifier (KUBECONFIG, else the in-cluster config)
  keysmith verifier [flags]  run only the verification service (a dedicated Deployment)
  keysmith dev [flags]       run the operator on a local control plane built by 'make controlplane'
                             (development build only: make dev)

Run 'keysmith <command> -help' for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "manager":
		err = runManager(os.Args[2:])
	case "verifier":
		err = runVerifier(os.Args[2:])
	case "dev":
		err = runDev(os.Args[2:])
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "keysmith: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keysmith %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
