package verifier

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// The audit trail records what the request says: its path (with the query, when nginx forwards
// $request_uri), its method and its caller. A client that puts its key there (GET /orders?api_key=…) must
// not get it written. These specs send keys, near-keys (a bad checksum) and keys of another prefix in each
// of those places and read the audit files back; the AfterSuite scans the suite's own file for keys too.
// Failure messages never print a field that may hold a key: only its length.
var _ = Describe("The audit trail with keys in the request", func() {
	It("redacts keys in a direct client's path and method, keeping their ids (the suite's verifier trusts no proxy)", func() {
		ns := newNamespace()
		ak, key := issue(ns, "key-in-the-url")
		other := generatedKey("acme1234", keys.Test)
		near := nearKey(key)

		// Untrusted: the record holds the request's own path (/authz/<client path>, no query) and method.
		req, _ := http.NewRequest(http.MethodGet, base+"/authz/orders/"+key+"/items/"+other+"/"+near+"?api_key="+key, nil)
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("X-Original-URI", "/orders?api_key="+key)
		req.Header.Set("X-Forwarded-Uri", "/orders?api_key="+key)
		st, _, _ := do(req)
		Expect(st).To(Equal(http.StatusOK))
		// A method is any token, and a key is one: it is cut to 32 bytes, a key cut short.
		req, _ = http.NewRequest(key, base+"/authz/method-is-a-key", nil)
		req.Header.Set("X-Api-Key", key)
		st, _, _ = do(req)
		Expect(st).To(Equal(http.StatusOK))

		byPath := waitRecords(auditPath, ns, 2)
		expectField("path", byPath, "/authz/orders/<key:"+ak.Status.CurrentKeyID+">/items/<key:"+keys.ID(other)+">/<redacted>")
		rec := byPath["/authz/method-is-a-key"]
		Expect(rec.Method == "<redacted>").To(BeTrue(), "the method (%d bytes) is not <redacted>", len(rec.Method))
		Expect(rec.Truncated).To(BeTrue())
		expectNoKeyMaterial(auditPath, key, other, near)
	})

	It("redacts keys that a trusted nginx forwards in X-Original-URI, a trusted proxy in X-Forwarded-Uri/-Method, and Envoy in its path", func() {
		ns := newNamespace()
		ak, key := issue(ns, "key-in-the-query")
		id := ak.Status.CurrentKeyID
		other := generatedKey("acme1234", keys.Test)
		near := nearKey(key)
		trustedAudit := filepath.Join(GinkgoT().TempDir(), "audit.log")
		v := startTrustingVerifier(trustedAudit)
		Eventually(func() int { return authzAt("http://"+v.Verifier.HTTPAddr(), key) }, eventually, poll).Should(Equal(http.StatusOK))

		By("nginx auth_request sends the client's $request_uri, query included, as X-Original-URI")
		upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream ok") }))
		DeferCleanup(upstream.Close)
		proxy := startNginx(strings.TrimPrefix(upstream.URL, "http://"), v.Verifier.HTTPAddr(), ns)
		req, _ := http.NewRequest(http.MethodGet, proxy+"/orders/7?api_key="+key+"&sig="+near+"&"+other, nil)
		req.Header.Set("X-Api-Key", key)
		st, _, _ := do(req)
		Expect(st).To(Equal(http.StatusOK))

		By("a trusted proxy's X-Forwarded-Uri and X-Forwarded-Method")
		req, _ = http.NewRequest(http.MethodGet, "http://"+v.Verifier.HTTPAddr()+"/authz", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-Uri", other+"/forwarded?token="+key)
		req.Header.Set("X-Forwarded-Method", other)
		st, _, _ = do(req)
		Expect(st).To(Equal(http.StatusOK))

		By("Envoy's original path, from a trusted peer")
		conn, err := grpc.NewClient(v.Verifier.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		check := checkRequest(key, nil, nil)
		check.Attributes.Request.Http.Path = "/envoy?access_token=" + key + "&x=" + near
		check.Attributes.Request.Http.Method = key
		out, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), check)
		Expect(err).NotTo(HaveOccurred())
		Expect(rpccode.Code(out.GetStatus().GetCode())).To(Equal(rpccode.Code_OK))

		byPath := waitRecords(trustedAudit, ns, 3)
		expectField("path", byPath, "/orders/7?api_key=<key:"+id+">&sig=<redacted>&<key:"+keys.ID(other)+">")
		expectField("path", byPath, "<key:"+keys.ID(other)+">/forwarded?token=<key:"+id+">")
		expectField("path", byPath, "/envoy?access_token=<key:"+id+">&x=<redacted>")
		for path, rec := range byPath {
			want := map[bool]string{true: "<redacted>", false: http.MethodGet}[strings.HasPrefix(path, "/envoy")]
			if strings.Contains(path, "/forwarded") {
				want = "<redacted>" // the 8-letter prefix key is 50 bytes, cut to 32
			}
			Expect(rec.Method == want).To(BeTrue(), "the method of a record (%d bytes) is not %s", len(rec.Method), want)
		}
		expectNoKeyMaterial(trustedAudit, key, other, near)
	})
})

// generatedKey returns a valid key that no ApiKey holds.
func generatedKey(prefix, env string) string {
	k, err := keys.Generate(prefix, env)
	Expect(err).NotTo(HaveOccurred())
	return k.Plaintext()
}

// nearKey returns key with its last checksum character changed: key-shaped, but not a valid key.
func nearKey(key string) string {
	last := byte('0')
	if key[len(key)-1] == '0' {
		last = '1'
	}
	near := key[:len(key)-1] + string(last)
	Expect(keys.Valid(near)).To(BeFalse())
	return near
}

// waitRecords waits for n audit records with a path about ApiKeys in ns in the file at path and returns
// them by path (a trusted peer's own GET /authz has none).
func waitRecords(path, ns string, n int) map[string]verify.AuditRecord {
	var out map[string]verify.AuditRecord
	Eventually(func() int {
		out = map[string]verify.AuditRecord{}
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			var r verify.AuditRecord
			if json.Unmarshal([]byte(l), &r) == nil && r.Namespace == ns && r.Path != "" {
				out[r.Path] = r
			}
		}
		return len(out)
	}, eventually, poll).Should(BeNumerically(">=", n), "audit records about %s", ns)
	return out
}

// expectField fails unless a record has the wanted path, without printing the paths it found.
func expectField(name string, byPath map[string]verify.AuditRecord, want string) {
	GinkgoHelper()
	if _, ok := byPath[want]; ok {
		return
	}
	var lengths []int
	for p := range byPath {
		lengths = append(lengths, len(p))
	}
	Fail(fmt.Sprintf("no record has the %s %s; the records' %ss have %v bytes, %d valid keys among them", name, want, name, lengths, testenv.FindKeys(fmt.Sprint(byPath))))
}

// expectNoKeyMaterial fails when the file holds a valid key, or 16 characters of the body of any of the
// given keys or near-keys (a key cut short is no valid key, but its body is still most of the secret).
func expectNoKeyMaterial(path string, secrets ...string) {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	text := string(b)
	Expect(testenv.FindKeys(text)).To(BeZero(), "valid keys in the audit trail")
	for i, s := range secrets {
		body := s[len(s)-keys.BodyLength:]
		for j := 0; j+16 <= len(body); j++ {
			Expect(strings.Contains(text, body[j:j+16])).To(BeFalse(), "16 characters of the body of secret %d at offset %d are in the audit trail", i, j)
		}
	}
}

// startTrustingVerifier starts a standalone verifier, with HTTP and gRPC, that believes the forwarding
// headers of 127.0.0.1 (where nginx and this test run) and writes its audit trail to auditFile.
func startTrustingVerifier(auditFile string) *operator.Manager {
	v, err := operator.NewVerifierManager(cfg, operator.VerifierOptions{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "127.0.0.1:0", AuditSink: auditFile, Clock: clk,
			TrustedProxies: "127.0.0.1,::1"},
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = v.Start(ctx)
	}()
	DeferCleanup(func() { cancel(); <-done })
	return v
}
