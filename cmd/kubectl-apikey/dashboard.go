package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/dashboard"
)

func init() { commands = append(commands, newDashboardCommand) }

func newDashboardCommand(e *env) *cobra.Command {
	var (
		port      int
		address   string
		noBrowser bool
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a local web page of your ApiKeys: warnings, timelines, a 90-day chart, live updates, actions",
		Long: `Serve a web page on this machine only (127.0.0.1) that shows every ApiKey you can see, flags those that
expire, expired, go unused, are stalled or break a policy, draws the expiries and scheduled rotations of
the next 90 days, follows changes live, and rotates, revokes and disables ApiKeys after a confirmation.

It runs with your kubeconfig, credentials and RBAC: nothing is installed in the cluster, no Secret is
read, and what the API server forbids you is shown as Forbidden. Every request needs the per-run token
of the URL it prints (and opens in your browser unless --no-browser); Ctrl-C stops it.

Without -n it shows every namespace, or the context's namespace if you may not list ApiKeys across
namespaces.`,
		Example: `  kubectl apikey dashboard
  kubectl apikey dashboard -n payments --port 8765 --no-browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			explicit := ""
			if e.flags.Namespace != nil {
				explicit = *e.flags.Namespace
			}
			fallback, err := e.namespace()
			if err != nil {
				return err
			}
			for _, ns := range []string{explicit, fallback} {
				if err := actions.ValidateNamespace(ns); ns != "" && err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			s, err := dashboard.New(dashboard.Options{
				Client: c, Namespace: explicit, FallbackNamespace: fallback, Address: address, Port: port,
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := e.streams.Out
			who := "your kubeconfig"
			if raw, err := e.flags.ToRawKubeConfigLoader().RawConfig(); err == nil {
				ctxName := raw.CurrentContext
				if e.flags.Context != nil && *e.flags.Context != "" {
					ctxName = *e.flags.Context
				}
				if ctxName != "" {
					who = "context " + ctxName + " of your kubeconfig"
				}
			}
			fmt.Fprintf(out, "keysmith dashboard, as %s (its credentials and RBAC), on this machine only:\n\n    %s\n\n", who, s.URL())
			fmt.Fprintln(out, "The URL holds this run's token: do not share it. Ctrl-C stops the dashboard.")
			if !noBrowser {
				cleanup, err := dashboard.OpenBrowser(s.URL())
				defer cleanup()
				if err != nil {
					fmt.Fprintf(e.streams.ErrOut, "could not open a browser (%v): open the URL above yourself\n", err)
				}
			}
			if err := s.Run(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "port to listen on (0: any free port)")
	cmd.Flags().StringVar(&address, "address", "127.0.0.1", "loopback address to listen on (127.0.0.1 or ::1; any other is refused)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the URL without opening a browser")
	return cmd
}
