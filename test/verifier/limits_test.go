package verifier

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/net/http2"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// These specs reproduce the attacks on the verifier's resources and on its audit trail, against the real
// manager running in this process: each fails on a verifier without the corresponding limit.
var _ = Describe("The verifier under hostile requests", func() {
	It("keeps its heap bounded under 150 requests with a 900 KiB X-Required-Scopes header, and still verifies", func() {
		ns := newNamespace()
		_, key := issue(ns, "flooded")
		addr := mgr.Verifier.HTTPAddr()
		// One-letter scopes: split, the header would become about 460,000 strings.
		huge := strings.TrimSuffix(strings.Repeat("a,", 900<<10/2), ",")
		req := []byte("GET /authz HTTP/1.1\r\nHost: verifier\r\nAuthorization: Bearer " + key + "\r\nX-Required-Scopes: " + huge + "\r\n\r\n")

		before := testenv.HeapAfterGC().HeapAlloc
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			for {
				metrics.Read(sample)
				if v := sample[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		work := make(chan struct{})
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for range work {
					st, _, err := rawExchange(addr, req, 30*time.Second)
					Expect(err).NotTo(HaveOccurred())
					mu.Lock()
					statuses[st]++
					mu.Unlock()
				}
			}()
		}
		start := time.Now()
		for i := 0; i < 150; i++ {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
		elapsed := time.Since(start)
		close(stop)
		<-sampled
		after := testenv.HeapAfterGC().HeapAlloc
		peakGrowth := int64(peak.Load()) - int64(before)
		afterGrowth := int64(after) - int64(before)
		GinkgoWriter.Printf("150 x 900 KiB X-Required-Scopes in %s: statuses %v; heap before %s, peak %s (+%s), after GC %s (%+.1f MiB); %s\n",
			elapsed.Round(time.Millisecond), statuses, mib(before), mib(peak.Load()), mib(uint64(max(peakGrowth, 0))), mib(after), float64(afterGrowth)/(1<<20), rss())

		for st := range statuses {
			Expect(st).To(BeElementOf(http.StatusRequestHeaderFieldsTooLarge, http.StatusBadRequest), "statuses %v", statuses)
		}
		Expect(peakGrowth).To(BeNumerically("<", 64<<20), "heap grew by %s at its peak", mib(uint64(max(peakGrowth, 0))))
		Expect(afterGrowth).To(BeNumerically("<", 64<<20), "heap grew by %s", mib(uint64(max(afterGrowth, 0))))
		Expect(code(key, "users:read")).To(Equal(verify.CodeValid), "a valid key still verifies")
		Expect(authz(key, "users:read").StatusCode).To(Equal(http.StatusOK))
	})

	It("cuts off a request body dripped one byte a second over HTTP/1.1", func() {
		conn, err := net.Dial("tcp", mgr.Verifier.HTTPAddr())
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		start := time.Now()
		_, err = io.WriteString(conn, "POST /v1/verify HTTP/1.1\r\nHost: verifier\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		stopDrip := drip(func(b []byte) error { _, err := conn.Write(b); return err })
		defer stopDrip()
		Expect(conn.SetReadDeadline(time.Now().Add(40 * time.Second))).To(Succeed())
		line, readErr := bufio.NewReader(conn).ReadString('\n')
		cutOff := time.Since(start)
		GinkgoWriter.Printf("dripped HTTP/1.1 body: cut off after %s (%q, %v)\n", cutOff.Round(10*time.Millisecond), strings.TrimSpace(line), readErr)
		Expect(isTimeout(readErr)).To(BeFalse(), "still reading a dripped body after %s", cutOff)
		Expect(cutOff).To(BeNumerically("<", 30*time.Second))
	})

	It("cuts off a gRPC request body dripped one byte a second over h2c", func() {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		defer tr.CloseIdleConnections()
		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+mgr.Verifier.GRPCAddr()+"/envoy.service.auth.v3.Authorization/Check", pr)
		Expect(err).NotTo(HaveOccurred())
		hreq.Header.Set("Content-Type", "application/grpc")
		hreq.Header.Set("TE", "trailers")
		start := time.Now()
		// A well-formed gRPC frame header (uncompressed, 100 bytes), then the message a byte a second.
		stopDrip := drip(func(b []byte) error { _, err := pw.Write(b); return err }, 0, 0, 0, 0, 100)
		defer stopDrip()
		resp, err := tr.RoundTrip(hreq)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cutOff := time.Since(start)
		grpcStatus := ""
		if resp != nil {
			grpcStatus = resp.Trailer.Get("Grpc-Status") + resp.Header.Get("Grpc-Status")
		}
		GinkgoWriter.Printf("dripped gRPC body over h2c: cut off after %s (grpc-status %q, %v)\n", cutOff.Round(10*time.Millisecond), grpcStatus, err)
		Expect(ctx.Err()).NotTo(HaveOccurred(), "still reading a dripped gRPC body after %s", cutOff)
		Expect(cutOff).To(BeNumerically("<", 30*time.Second))
	})

	It("answers 400 INVALID_SCOPES to an over-long or malformed scope list, on every front end, and records nothing", func() {
		ns := newNamespace()
		_, key := issue(ns, "many-scopes")
		var many []string
		for i := 0; i < 65; i++ {
			many = append(many, fmt.Sprintf("marker%d:read", i))
		}
		list := strings.Join(many, ",")

		By("/authz, scopes in the query")
		req, _ := http.NewRequest(http.MethodGet, base+"/authz?scopes="+url.QueryEscape(list), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		st, body, hdr := do(req)
		Expect(st).To(Equal(http.StatusBadRequest))
		Expect(body).To(ContainSubstring(`"code":"INVALID_SCOPES"`))
		Expect(hdr.Get("WWW-Authenticate")).To(Equal(`Bearer realm="keysmith", error="invalid_request"`))
		Expect(body).NotTo(ContainSubstring("marker"), "the answer echoes the input")

		By("/authz, a malformed scope in X-Required-Scopes")
		req, _ = http.NewRequest(http.MethodGet, base+"/authz", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Required-Scopes", "users:read, Marker-Upper:READ")
		st, body, hdr = do(req)
		Expect(st).To(Equal(http.StatusBadRequest))
		Expect(body).To(ContainSubstring(`"code":"INVALID_SCOPES"`))
		Expect(body + hdr.Get("WWW-Authenticate")).NotTo(ContainSubstring("Marker"))

		By("POST /v1/verify")
		b, _ := json.Marshal(verify.VerifyRequest{Key: key, Scopes: many})
		resp, err := http.Post(base+"/v1/verify", "application/json", bytes.NewReader(b))
		Expect(err).NotTo(HaveOccurred())
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(string(out)).To(ContainSubstring(`"code":"INVALID_SCOPES"`))
		Expect(string(out)).NotTo(ContainSubstring("marker"))

		By("gRPC, scopes in context_extensions")
		ext := extAuthz()
		res, err := ext.Check(context.Background(), checkRequest(key, map[string]string{"scopes": list}, nil))
		Expect(err).NotTo(HaveOccurred())
		Expect(rpccode.Code(res.GetStatus().GetCode())).To(Equal(rpccode.Code_INVALID_ARGUMENT))
		Expect(res.GetDeniedResponse().GetStatus().GetCode()).To(BeEquivalentTo(http.StatusBadRequest))
		Expect(res.GetDeniedResponse().GetBody()).To(ContainSubstring(`"code":"INVALID_SCOPES"`))

		By("no audit record holds the refused input")
		Consistently(func() string { b, _ := os.ReadFile(auditPath); return string(b) }, time.Second, 100*time.Millisecond).ShouldNot(ContainSubstring("marker"))
	})

	It("refuses an oversized gRPC message", func() {
		ext := extAuthz()
		_, err := ext.Check(context.Background(), checkRequest("ks_live_nope", nil, map[string]string{"x-padding": strings.Repeat("x", 100<<10)}))
		Expect(status.Code(err)).To(Equal(codes.ResourceExhausted), "a 100 KiB CheckRequest: %v", err)
		_, err = ext.Check(context.Background(), checkRequest("ks_live_nope", nil, nil))
		Expect(err).NotTo(HaveOccurred(), "a normal request after it")
	})

	It("refuses oversized gRPC metadata (HTTP/2 headers)", func() {
		ext := extAuthz()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-padding", strings.Repeat("x", 100<<10))
		_, err := ext.Check(ctx, checkRequest("ks_live_nope", nil, nil))
		Expect(err).To(HaveOccurred(), "100 KiB of HTTP/2 headers were accepted")
		GinkgoWriter.Printf("100 KiB of gRPC metadata: %v\n", err)

		_, err = ext.Check(context.Background(), checkRequest("ks_live_nope", nil, nil))
		Expect(err).NotTo(HaveOccurred(), "a normal request after them")
	})

	It("records a direct client's own address and path, whatever forwarding headers it sends", func() {
		ns := newNamespace()
		_, key := issue(ns, "forger")
		req, _ := http.NewRequest(http.MethodGet, base+"/authz/real/path", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", "198.51.100.66")
		req.Header.Set("X-Real-Ip", "198.51.100.67")
		req.Header.Set("X-Forwarded-Method", "DELETE")
		req.Header.Set("X-Forwarded-Uri", "/forged/uri")
		req.Header.Set("X-Original-Uri", "/forged/original")
		st, _, _ := do(req)
		Expect(st).To(Equal(http.StatusOK))
		var rec verify.AuditRecord
		Eventually(func() bool { rec = lastAuditRecordOf(ns); return rec.Namespace == ns }, eventually, poll).Should(BeTrue())
		Expect(rec.Caller).To(Equal("127.0.0.1"))
		Expect(rec.Method).To(Equal(http.MethodGet))
		Expect(rec.Path).To(Equal("/authz/real/path"))
	})
})

// rawExchange sends req on a new connection while it reads the answer's status line, like a client that
// does not wait for the server to read all it sends, and returns the status.
func rawExchange(addr string, req []byte, timeout time.Duration) (int, time.Duration, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(timeout))
	go func() { _, _ = conn.Write(req) }()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, time.Since(start), fmt.Errorf("no status line: %w", err)
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return 0, time.Since(start), fmt.Errorf("status line %q", line)
	}
	st, err := strconv.Atoi(fields[1])
	return st, time.Since(start), err
}

// drip writes first, then one byte a second, with write until it fails or the returned function is
// called.
func drip(write func([]byte) error, first ...byte) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		if len(first) > 0 && write(first) != nil {
			return
		}
		for {
			if write([]byte{'{'}) != nil {
				return
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rss returns the process's resident set size and its peak, from /proc/self/status.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "rss unknown"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

func do(req *http.Request) (int, string, http.Header) {
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func extAuthz() authv3.AuthorizationClient {
	conn, err := grpc.NewClient(mgr.Verifier.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest is what Envoy sends for a GET /x with the key as a bearer token.
func checkRequest(key string, extensions, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{"authorization": "Bearer " + key}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Headers: h}},
		ContextExtensions: extensions,
	}}
}

// lastAuditRecordOf returns the newest audit record about an ApiKey in ns.
func lastAuditRecordOf(ns string) verify.AuditRecord {
	b, _ := os.ReadFile(auditPath)
	var last verify.AuditRecord
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, `"namespace":"`+ns+`"`) {
			continue
		}
		var r verify.AuditRecord
		if json.Unmarshal([]byte(l), &r) == nil {
			last = r
		}
	}
	return last
}
