package main

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// Shell completion. cobra provides the completion command (bash, zsh, fish, powershell scripts for
// kubectl-apikey) and the hidden __complete command they call. kubectl 1.26 and later completes a
// plugin's arguments by running an executable named kubectl_complete-apikey from PATH with them
// (k8s.io/kubectl/pkg/cmd/plugin/plugin_completion.go); dist/krew/kubectl_complete-apikey is that
// script: it runs kubectl-apikey __complete "$@".

// completeApiKeyNames completes the first argument with the names of the ApiKeys in the namespace of -n
// (listed with the user's credentials; nothing when they may not list them).
func completeApiKeyNames(e *env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := e.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, err := e.namespace()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list := &v1alpha1.ApiKeyList{}
		if err := c.List(cmd.Context(), list, client.InNamespace(ns)); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, ak := range list.Items {
			if strings.HasPrefix(ak.Name, toComplete) {
				out = append(out, ak.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeKeyIDs completes --key with the ids of the valid keys of the ApiKey named by the first
// argument, each described by its state.
func completeKeyIDs(e *env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := e.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, err := e.namespace()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ak := &v1alpha1.ApiKey{}
		if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: ns, Name: args[0]}, ak); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, k := range ak.Status.Keys {
			if rotation.Valid(k) && strings.HasPrefix(k.ID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(k.ID, string(k.State)))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
