package main

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// Shell completion. cobra provides the completion command (bash, zsh, fish, powershell scripts for
// kubectl-apikey) and the hidden __complete command they call. kubectl 1.26 and later completes a
// plugin's arguments by running an executable named kubectl_complete-apikey from PATH with them
// (k8s.io/kubectl/pkg/cmd/plugin/plugin_completion.go); dist/krew/kubectl_complete-apikey is that
// script: it runs kubectl-apikey __complete "$@".
//
// Completion sends nothing the user typed that is not a valid name: a key pasted on the command line
// (as NAME, or being completed) never reaches the API server (and its audit log).

var noCompletions = cobra.ShellCompDirectiveNoFileComp

// completionClient returns the user's client and the namespace of -n for a completion, once the
// namespace (and name, unless "") are valid names; ok is false when nothing should be completed.
func (e *env) completionClient(name string) (c client.WithWatch, ns string, ok bool) {
	ns, err := e.namespace()
	if err != nil {
		return nil, "", false
	}
	check := name
	if check == "" {
		check = "x" // only the namespace
	}
	if e.validName(ns, check) != nil {
		return nil, "", false
	}
	c, err = e.client()
	if err != nil {
		return nil, "", false
	}
	return c, ns, true
}

// completeApiKeyNames completes the first argument with the names of the ApiKeys in the namespace of -n
// (listed with the user's credentials; nothing when they may not list them). What is being completed is
// matched here, never sent.
func completeApiKeyNames(e *env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 || keys.HasKeyShape(toComplete) {
			return nil, noCompletions
		}
		c, ns, ok := e.completionClient("")
		if !ok {
			return nil, noCompletions
		}
		list := &v1alpha1.ApiKeyList{}
		if err := c.List(cmd.Context(), list, client.InNamespace(ns)); err != nil {
			return nil, noCompletions
		}
		var out []cobra.Completion
		for _, ak := range list.Items {
			if strings.HasPrefix(ak.Name, toComplete) {
				out = append(out, ak.Name)
			}
		}
		return out, noCompletions
	}
}

// completeKeyIDs completes --key with the ids of the valid keys of the ApiKey named by the first
// argument (once it is a valid name), each described by its state.
func completeKeyIDs(e *env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, noCompletions
		}
		c, ns, ok := e.completionClient(args[0])
		if !ok {
			return nil, noCompletions
		}
		ak := &v1alpha1.ApiKey{}
		if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: ns, Name: args[0]}, ak); err != nil {
			return nil, noCompletions
		}
		var out []cobra.Completion
		for _, k := range ak.Status.Keys {
			if rotation.Valid(k) && strings.HasPrefix(k.ID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(k.ID, string(k.State)))
			}
		}
		return out, noCompletions
	}
}
