// Command argocd-gen writes config/argocd/argocd-cm.yaml, the argocd-cm patch of the kustomize Component
// in config/argocd, from the scripts in Argo CD's layout under
// config/argocd/resource_customizations/keysmith.dev/ApiKey (package argocd renders it). The .lua files are
// the only source; the patch is never edited by hand.
//
//	go run ./hack/argocd-gen          # write the patch
//	go run ./hack/argocd-gen -check   # exit 1 when the committed patch is stale
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keysmith-dev/keysmith/config/argocd"
)

func main() {
	check := flag.Bool("check", false, "report a stale config/argocd/"+argocd.PatchFile+" instead of writing it")
	root := flag.String("root", "", "module root (default: found from the working directory)")
	flag.Parse()
	if err := run(*root, *check); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-gen:", err)
		os.Exit(1)
	}
}

func run(root string, check bool) error {
	if root == "" {
		var err error
		if root, err = moduleRoot(); err != nil {
			return err
		}
	}
	dir := filepath.Join(root, "config", "argocd")
	// The scripts on disk, not the ones compiled in: go run builds afresh, but -root may name another tree.
	s, err := argocd.Read(os.DirFS(filepath.Join(dir, filepath.FromSlash(argocd.ApiKeyDir))))
	if err != nil {
		return err
	}
	want, err := argocd.Render(s)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, argocd.PatchFile)
	if check {
		have, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, want) {
			return fmt.Errorf("config/argocd/%s is stale: run 'go run ./hack/argocd-gen' and commit it", argocd.PatchFile)
		}
		return nil
	}
	return os.WriteFile(out, want, 0o644)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "config", "argocd", filepath.FromSlash(argocd.ApiKeyDir))); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no module root with config/argocd above the working directory; pass -root")
		}
		dir = parent
	}
}
