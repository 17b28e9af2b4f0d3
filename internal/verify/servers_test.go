package verify

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// serve runs srv (as the manager would) on a fresh port and returns its address.
func serve(t *testing.T, v *Verifier, name string, srv *http.Server, tlsConfig *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := v.managedServer(name, srv, l, tlsConfig)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ms.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

func testTLS(t *testing.T, v *Verifier) *tls.Config {
	dir := t.TempDir()
	writeCert(t, dir, "verifier.example")
	v.opts.TLSCertFile, v.opts.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cfg, err := v.tlsConfig(logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestHTTP2HeadersAreBounded: over TLS the HTTP port speaks HTTP/2, whose header list the HTTP/1
// MaxHeaderBytes also bounds (Go's default was 1 MiB).
func TestHTTP2HeadersAreBounded(t *testing.T) {
	f := newFixture(t)
	v := &Verifier{Index: f.ix, Service: newService(t, f, nil)}
	addr := serve(t, v, "verify-http", v.newServer(v.Service.Handler()), testTLS(t, v))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	get := func(header string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/authz", nil)
		req.Header.Set("X-Api-Key", f.active)
		req.Header.Set("X-Required-Scopes", header)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := get("users:read")
	if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("a normal request: %v %v", resp, err)
	}
	resp, err = get(strings.Repeat("a,", 50<<10))
	if err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KiB of HTTP/2 headers got %d", resp.StatusCode)
	}
	t.Logf("100 KiB of HTTP/2 headers: %v %v", statusOf(resp), err)
}

func statusOf(r *http.Response) any {
	if r == nil {
		return nil
	}
	return r.Status
}

// TestGRPCServerLimits: the gRPC server takes messages of at most 64 KiB (gRPC's default is 4 MiB) and
// HTTP/2 header lists of at most 16 KiB, in plain text (prior knowledge) and over TLS.
func TestGRPCServerLimits(t *testing.T) {
	f := newFixture(t)
	for _, withTLS := range []bool{false, true} {
		v := &Verifier{Index: f.ix, Service: newService(t, f, nil)}
		var cfg *tls.Config
		creds := insecure.NewCredentials()
		if withTLS {
			cfg = testTLS(t, v)
			creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
		}
		srv, _ := v.serveGRPC(cfg)
		addr := serve(t, v, "verify-grpc", srv.Server, cfg)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ext := authv3.NewAuthorizationClient(conn)
		check := func(ctx context.Context, pad int) error {
			_, err := ext.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-api-key": f.active, "x-padding": strings.Repeat("x", pad)}}}}})
			return err
		}
		if err := check(context.Background(), 0); err != nil {
			t.Fatalf("tls=%v: a normal request: %v", withTLS, err)
		}
		if err := check(context.Background(), 100<<10); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("tls=%v: a 100 KiB message: %v", withTLS, err)
		}
		md := metadata.AppendToOutgoingContext(context.Background(), "x-padding", strings.Repeat("x", 100<<10))
		if err := check(md, 0); err == nil {
			t.Fatalf("tls=%v: 100 KiB of metadata accepted", withTLS)
		}
		if err := check(context.Background(), 0); err != nil {
			t.Fatalf("tls=%v: a normal request after them: %v", withTLS, err)
		}
	}
}

func TestServerTimeouts(t *testing.T) {
	srv := (&Verifier{}).newServer(http.NotFoundHandler())
	if srv.MaxHeaderBytes != 16<<10 || srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.ReadTimeout > 30*time.Second ||
		srv.WriteTimeout <= srv.ReadTimeout || srv.IdleTimeout <= 0 || srv.ConnState == nil {
		t.Fatalf("limits %+v", srv)
	}
}

// TestServingWaitsForTheLastAnswers: the audit trail closes once the servers have stopped answering.
func TestServingWaitsForTheLastAnswers(t *testing.T) {
	var s serving
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{ConnState: s.connState, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(inHandler)
		<-release
	})}
	go func() { _ = srv.Serve(s.listener(l)) }()
	go func() { _, _ = http.Get("http://" + l.Addr().String()) }()
	<-inHandler
	if s.wait(50 * time.Millisecond) {
		t.Fatal("done while the listener is open")
	}
	shutdown := make(chan error)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	if s.wait(100 * time.Millisecond) {
		t.Fatal("done while a request is being answered")
	}
	close(release)
	if !s.wait(5 * time.Second) {
		t.Fatal("not done after the server stopped")
	}
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
}

// TestHTTP2HeadersAreBoundedForClientsThatIgnoreTheLimit sends 100 KiB of headers in raw HTTP/2 frames
// to the plain-text gRPC port, ignoring the limit the server advertises: the server refuses the stream.
func TestHTTP2HeadersAreBoundedForClientsThatIgnoreTheLimit(t *testing.T) {
	if got := rawHTTP2Headers(t, 1<<10); got != "grpc-status" {
		t.Fatalf("1 KiB of headers: %s", got)
	}
	got := rawHTTP2Headers(t, 100<<10)
	if got == "grpc-status" {
		t.Fatal("100 KiB of headers reached gRPC")
	}
	t.Logf("100 KiB of raw HTTP/2 headers: %s", got)
}

// rawHTTP2Headers sends a gRPC request with pad bytes of headers, and says how the server answered:
// "grpc-status" (gRPC saw it), ":status 431", a RST_STREAM or GOAWAY, or the connection closed.
func rawHTTP2Headers(t *testing.T, pad int) string {
	f := newFixture(t)
	v := &Verifier{Index: f.ix, Service: newService(t, f, nil)}
	srv, _ := v.serveGRPC(nil)
	addr := serve(t, v, "verify-grpc", srv.Server, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, hf := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "verifier"}, {":path", "/envoy.service.auth.v3.Authorization/Check"},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"x-padding", strings.Repeat("x", pad)}} {
		_ = enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
	}
	b := block.Bytes()
	const chunk = 16 << 10
	first := min(chunk, len(b))
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:first], EndStream: true, EndHeaders: first == len(b)}); err != nil {
		t.Fatal(err)
	}
	for b = b[first:]; len(b) > 0; {
		n := min(chunk, len(b))
		if err := fr.WriteContinuation(1, n == len(b), b[:n]); err != nil {
			break // the server may close first
		}
		b = b[n:]
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			return "closed: " + err.Error()
		}
		switch fr := frame.(type) {
		case *http2.HeadersFrame:
			fields, _ := dec.DecodeFull(fr.HeaderBlockFragment())
			for _, hf := range fields {
				if hf.Name == ":status" && hf.Value != "200" {
					return ":status " + hf.Value
				}
				if hf.Name == "grpc-status" {
					return "grpc-status"
				}
			}
		case *http2.RSTStreamFrame:
			return "RST_STREAM " + fr.ErrCode.String()
		case *http2.GoAwayFrame:
			return "GOAWAY " + fr.ErrCode.String()
		}
	}
}
