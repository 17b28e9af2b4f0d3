// Command kubectl-apikey is keysmith's kubectl plugin. Installed on PATH, kubectl runs it as
// `kubectl apikey`: list, describe, rotate, revoke, disable and enable ApiKeys, scan files for leaked
// keys, and serve a local dashboard. Every call runs with the user's own kubeconfig, credentials and RBAC;
// the plugin never prints a key.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// env is what every subcommand gets: the standard kubectl flags (-n, --context, --kubeconfig, ...) and
// the streams to read and write.
type env struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
}

// commands are the subcommands; each file adds its own in an init function.
var commands []func(*env) *cobra.Command

// exitError ends the plugin with a given exit code (scan: 1 when a live key was found) after printing
// nothing more than its message, if any.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func newRoot(streams genericiooptions.IOStreams) *cobra.Command {
	e := &env{flags: genericclioptions.NewConfigFlags(true), streams: streams}
	root := &cobra.Command{
		Use:           "kubectl-apikey",
		Short:         "See keysmith's ApiKeys, act on them, find leaked keys",
		Long:          "kubectl apikey: see every ApiKey you may read, rotate, revoke, disable and enable them, scan files\nand git history for leaked keys, and serve a local dashboard. It runs with your kubeconfig and RBAC.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl apikey",
		},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	e.flags.AddFlags(root.PersistentFlags())
	for _, c := range commands {
		root.AddCommand(c(e))
	}
	return root
}

func main() {
	root := newRoot(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := root.Execute(); err != nil {
		if msg, ok := fromServer(err); ok { // as kubectl: Error from server (Forbidden): ...
			fmt.Fprintln(os.Stderr, redactKeys(msg))
			os.Exit(1)
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "error:", redactKeys(ee.msg))
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "error:", redactKeys(err.Error())) // a key typed as an argument is never echoed
		os.Exit(2)
	}
}

// scheme holds the kinds the plugin reads and writes.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// testClient, when set by a test, replaces the client built from the kubeconfig.
var testClient client.WithWatch

// client returns a client with the user's credentials (the kubeconfig and flags as kubectl reads them).
func (e *env) client() (client.WithWatch, error) {
	if testClient != nil {
		return testClient, nil
	}
	cfg, err := e.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: scheme()})
}

// namespace returns the namespace of -n, else the kubeconfig context's, else "default".
func (e *env) namespace() (string, error) {
	ns, _, err := e.flags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}
