package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

func TestRedactKeys(t *testing.T) {
	k, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{k.Plaintext(), k.Plaintext() + "x", k.Plaintext()[:30]} {
		got := redactKeys(`unknown command "` + s + `" for "kubectl apikey"`)
		if got != `unknown command "<redacted>" for "kubectl apikey"` {
			t.Errorf("redactKeys = %q", got)
		}
	}
	if got := redactKeys("key id 0123456789ab, ks_live_short"); got != "key id 0123456789ab, ks_live_short" {
		t.Errorf("redacted what is no key: %q", got)
	}
}

func TestFromServer(t *testing.T) {
	gr := schema.GroupResource{Group: "keysmith.dev", Resource: "apikeys"}
	err := fmt.Errorf("patching: %w", apierrors.NewForbidden(gr, "billing-api", errors.New(`User "carol" cannot patch resource "apikeys"`)))
	msg, ok := fromServer(err)
	if !ok || msg != `Error from server (Forbidden): apikeys.keysmith.dev "billing-api" is forbidden: User "carol" cannot patch resource "apikeys"` {
		t.Errorf("fromServer = %q, %v", msg, ok)
	}
	if _, ok := fromServer(errors.New("dial tcp: refused")); ok {
		t.Error("a client error taken for the server's")
	}
	if !strings.HasPrefix(mustFromServer(apierrors.NewNotFound(gr, "x")), "Error from server (NotFound): ") {
		t.Error("NotFound")
	}
}

func mustFromServer(err error) string { s, _ := fromServer(err); return s }
