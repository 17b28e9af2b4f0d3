package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func writeCert(t *testing.T, dir, cn string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateIsReloadedWhenItChanges(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "first.example")
	v := &Verifier{opts: Options{TLSCertFile: filepath.Join(dir, "tls.crt"), TLSKeyFile: filepath.Join(dir, "tls.key")}}
	cfg, err := v.tlsConfig(logr.Discard())
	if err != nil || cfg == nil {
		t.Fatalf("tlsConfig: %v", err)
	}
	cn := func() string {
		c, err := cfg.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.Subject.CommonName
	}
	if cn() != "first.example" {
		t.Fatal("initial certificate not served")
	}
	writeCert(t, dir, "second.example")
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(dir, "tls.crt"), later, later); err != nil {
		t.Fatal(err)
	}
	if cn() != "first.example" {
		t.Fatal("reloaded before the check interval")
	}
	// Pretend the last check was long ago.
	reloaderOf(t, v, cfg).checked = time.Time{}
	if cn() != "second.example" {
		t.Fatal("changed certificate not reloaded")
	}
	// A broken file keeps the previous certificate.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	evenLater := later.Add(time.Minute)
	_ = os.Chtimes(filepath.Join(dir, "tls.crt"), evenLater, evenLater)
	reloaderOf(t, v, cfg).checked = time.Time{}
	if cn() != "second.example" {
		t.Fatal("a broken certificate replaced the working one")
	}
}

func reloaderOf(t *testing.T, v *Verifier, _ any) *certReloader {
	t.Helper()
	if v.certs == nil {
		t.Fatal("no certificate reloader")
	}
	return v.certs
}
