package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

var _ = Describe("The verifier", func() {
	ctx := context.Background()

	It("accepts a key issued by the operator and enforces its scopes, over HTTP and gRPC", func() {
		ns := newNamespace()
		ak, key := issue(ns, "svc")
		status, r := check(key, "users:read")
		Expect(status).To(Equal(http.StatusOK))
		Expect(r.Valid).To(BeTrue())
		Expect(r.Code).To(Equal(verify.CodeValid))
		Expect(r.KeyID).To(Equal(ak.Status.CurrentKeyID))
		Expect(*r.ApiKey).To(Equal(verify.ObjectRef{Namespace: ns, Name: "svc"}))
		Expect(r.Scopes).To(ConsistOf("users:read", "roles:manage"))
		Expect(r.ExpiresAt.Equal(ak.Status.Keys[0].NotAfter.Time)).To(BeTrue())
		Expect(code(key, "users:write")).To(Equal(verify.CodeInsufficientScope))

		resp := authz(key, "users:read")
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(resp.Header.Get("X-ApiKey-Name")).To(Equal(ns + "/svc"))
		Expect(resp.Header.Get("Cache-Control")).To(Equal("no-store"))
		Expect(authz(key, "users:write").StatusCode).To(Equal(http.StatusForbidden))

		conn, err := grpc.NewClient(mgr.Verifier.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		ext := authv3.NewAuthorizationClient(conn)
		req := func(k, scopes string) *authv3.CheckRequest {
			return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Headers: map[string]string{"authorization": "Bearer " + k}}},
				ContextExtensions: map[string]string{"scopes": scopes},
			}}
		}
		out, err := ext.Check(ctx, req(key, "roles:manage"))
		Expect(err).NotTo(HaveOccurred())
		Expect(rpccode.Code(out.GetStatus().GetCode())).To(Equal(rpccode.Code_OK))
		out, err = ext.Check(ctx, req(key, "audit:read"))
		Expect(err).NotTo(HaveOccurred())
		Expect(rpccode.Code(out.GetStatus().GetCode())).To(Equal(rpccode.Code_PERMISSION_DENIED))
		Expect(out.GetDeniedResponse().GetStatus().GetCode()).To(BeEquivalentTo(403))
	})

	It("refuses, as NOT_ACCEPTED, a valid key from a namespace or environment the API does not accept, over HTTP and gRPC", func() {
		mine, theirs := newNamespace(), newNamespace()
		_, own := issue(mine, "own")
		_, foreign := issue(theirs, "foreign")
		_, testKey := issue(mine, "sandbox", func(ak *v1alpha1.ApiKey) { ak.Spec.Environment = v1alpha1.EnvironmentTest })

		verifyWith := func(key string, constraints map[string]any) (int, map[string]any) {
			body := map[string]any{"key": key, "scopes": []string{"users:read"}}
			for k, v := range constraints {
				body[k] = v
			}
			b, _ := json.Marshal(body)
			resp, err := http.Post(base+"/v1/verify", "application/json", bytes.NewReader(b))
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out
		}
		accept := map[string]any{"namespaces": []string{mine, "elsewhere"}, "environment": "live"}
		st, out := verifyWith(own, accept)
		Expect(st).To(Equal(http.StatusOK))
		Expect(out["code"]).To(Equal("VALID"))
		st, out = verifyWith(foreign, accept)
		Expect(st).To(Equal(http.StatusOK))
		Expect(out).To(And(HaveKeyWithValue("valid", false), HaveKeyWithValue("code", "NOT_ACCEPTED")))
		Expect(out).NotTo(HaveKey("apiKey"), "nothing is disclosed about a key the API does not accept")
		_, out = verifyWith(testKey, accept)
		Expect(out["code"]).To(Equal("NOT_ACCEPTED"), "a test key where only live keys are accepted")
		_, out = verifyWith(testKey, map[string]any{"environment": "test"})
		Expect(out["code"]).To(Equal("VALID"))
		st, out = verifyWith(own, map[string]any{"namespaces": []string{"Not_A_Label"}})
		Expect(st).To(Equal(http.StatusBadRequest))
		Expect(out["code"]).To(Equal("INVALID_CONSTRAINTS"))

		authzWith := func(key, query string) *http.Response {
			req, _ := http.NewRequest(http.MethodGet, base+"/authz?"+query, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp
		}
		q := "scopes=users:read&namespaces=" + mine + ",elsewhere&environment=live"
		Expect(authzWith(own, q).StatusCode).To(Equal(http.StatusOK))
		resp := authzWith(foreign, q)
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`error="insufficient_scope"`))
		Expect(resp.Header.Get("X-ApiKey-Id")).To(BeEmpty())
		Expect(authzWith(testKey, q).StatusCode).To(Equal(http.StatusForbidden))
		Expect(authzWith(own, "namespaces="+mine+"&namespaces=other").StatusCode).To(Equal(http.StatusBadRequest), "a constraint given twice")
		Expect(authzWith(own, "environment=staging").StatusCode).To(Equal(http.StatusBadRequest))

		conn, err := grpc.NewClient(mgr.Verifier.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		ext := authv3.NewAuthorizationClient(conn)
		grpcWith := func(key string) *authv3.CheckResponse {
			out, err := ext.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Headers: map[string]string{"authorization": "Bearer " + key}}},
				ContextExtensions: map[string]string{"scopes": "users:read", "namespaces": mine, "environment": "live"},
			}})
			Expect(err).NotTo(HaveOccurred())
			return out
		}
		Expect(rpccode.Code(grpcWith(own).GetStatus().GetCode())).To(Equal(rpccode.Code_OK))
		denied := grpcWith(foreign)
		Expect(rpccode.Code(denied.GetStatus().GetCode())).To(Equal(rpccode.Code_PERMISSION_DENIED))
		Expect(denied.GetDeniedResponse().GetStatus().GetCode()).To(BeEquivalentTo(http.StatusForbidden))
		Expect(rpccode.Code(grpcWith(testKey).GetStatus().GetCode())).To(Equal(rpccode.Code_PERMISSION_DENIED))

		Eventually(func() string { b, _ := os.ReadFile(auditPath); return string(b) }, eventually, poll).Should(
			And(ContainSubstring(`"code":"NOT_ACCEPTED"`), ContainSubstring(`"namespace":"`+theirs+`"`)), "refusals are audited")
	})

	It("accepts old and new keys during the overlap, and refuses the old one exactly at its notAfter", func() {
		ns := newNamespace()
		first, oldKey := issue(ns, "rot", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: &metav1.Duration{Duration: 10 * time.Minute}}
		})
		annotate(ns, "rot", v1alpha1.AnnotationRotate, "1")
		second, newKey := waitKey(ns, "rot", first.Status.CurrentKeyID)
		notAfter := keyByID(second, first.Status.CurrentKeyID).NotAfter.Time
		Eventually(func() verify.Code { return code(newKey) }, eventually, poll).Should(Equal(verify.CodeValid))
		Expect(code(oldKey)).To(Equal(verify.CodeValid))

		clk.SetTime(notAfter.Add(-time.Second))
		Expect(code(oldKey)).To(Equal(verify.CodeValid), "one second before notAfter")
		clk.SetTime(notAfter)
		Expect(code(oldKey)).To(Equal(verify.CodeExpired), "at notAfter, before the operator has even marked it")
		Expect(code(newKey)).To(Equal(verify.CodeValid))
		Expect(authz(oldKey, "").StatusCode).To(Equal(http.StatusUnauthorized))
	})

	It("refuses a key once its rotation with overlap 0 is recorded", func() {
		ns := newNamespace()
		first, oldKey := issue(ns, "zero", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: &metav1.Duration{Duration: 0}}
		})
		start := time.Now()
		annotate(ns, "zero", v1alpha1.AnnotationRotate, "now")
		Eventually(func() verify.Code { return code(oldKey) }, eventually, time.Millisecond).Should(Equal(verify.CodeExpired))
		GinkgoWriter.Printf("rotation with overlap 0: old key refused %s after the annotation\n", time.Since(start))
		_, newKey := waitKey(ns, "zero", first.Status.CurrentKeyID)
		Expect(code(newKey)).To(Equal(verify.CodeValid))
	})

	It("refuses the keys of an ApiKey as soon as it is being deleted", func() {
		ns := newNamespace()
		_, key := issue(ns, "doomed", func(ak *v1alpha1.ApiKey) { ak.Finalizers = []string{"test.keysmith.dev/hold"} })
		Expect(code(key)).To(Equal(verify.CodeValid))
		start := time.Now()
		Expect(k8s.Delete(ctx, get(ns, "doomed"))).To(Succeed())
		Eventually(func() verify.Code { return code(key) }, eventually, time.Millisecond).Should(Equal(verify.CodeRevoked))
		GinkgoWriter.Printf("delete: key refused %s after the delete call\n", time.Since(start))

		ak := get(ns, "doomed")
		patch := client.MergeFrom(ak.DeepCopy())
		ak.Finalizers = nil
		Expect(k8s.Patch(ctx, ak, patch)).To(Succeed())
		Eventually(func() verify.Code { return code(key) }, eventually, poll).Should(Equal(verify.CodeNotFound))
	})

	It("flushes lastUsedAt at most once per interval, forward only", func() {
		ns := newNamespace()
		ak, key := issue(ns, "used")
		Expect(ak.Status.Keys[0].LastUsedAt).To(BeNil())
		before := len(statusPatches(ns))
		deadline := time.Now().Add(2*flushInterval + flushInterval/2)
		n := 0
		for time.Now().Before(deadline) {
			Expect(code(key)).To(Equal(verify.CodeValid))
			n++
			time.Sleep(20 * time.Millisecond)
		}
		Eventually(func() *metav1.Time { return get(ns, "used").Status.Keys[0].LastUsedAt }, eventually, poll).ShouldNot(BeNil())
		Expect(get(ns, "used").Status.Keys[0].LastUsedAt.Time.Equal(clk.Now())).To(BeTrue())
		Expect(get(ns, "used").Status.LastUsedAt.Time.Equal(clk.Now())).To(BeTrue())
		// The fake clock does not move, so every use has the same second: one flush in all.
		Consistently(func() int { return len(statusPatches(ns)) - before }, 2*flushInterval, poll).Should(Equal(1))
		GinkgoWriter.Printf("lastUsedAt: %d verifications over %s, %d status patch\n", n, 2*flushInterval+flushInterval/2, len(statusPatches(ns))-before)

		By("newer uses are written once per interval")
		before = len(statusPatches(ns))
		for i := 0; i < 3; i++ {
			clk.Step(time.Second)
			Expect(code(key)).To(Equal(verify.CodeValid))
			time.Sleep(flushInterval + flushInterval/4)
		}
		Eventually(func() bool { return get(ns, "used").Status.Keys[0].LastUsedAt.Time.Equal(clk.Now()) }, eventually, poll).Should(BeTrue())
		Expect(len(statusPatches(ns)) - before).To(BeNumerically("<=", 3))

		By("never moving back")
		future := metav1.NewTime(clk.Now().Add(time.Hour))
		cur := get(ns, "used")
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Status.Keys[0].LastUsedAt = &future
		Expect(k8s.Status().Patch(ctx, cur, patch)).To(Succeed())
		Expect(code(key)).To(Equal(verify.CodeValid))
		Consistently(func() bool { return get(ns, "used").Status.Keys[0].LastUsedAt.Time.Equal(future.Time) }, 2*flushInterval, poll).Should(BeTrue())
	})

	It("writes an audit record per decision with key ids and no key material", func() {
		ns := newNamespace()
		ak, key := issue(ns, "audited")
		Expect(code(key)).To(Equal(verify.CodeValid))
		Expect(code(key, "audit:read")).To(Equal(verify.CodeInsufficientScope))
		Eventually(func() string { b, _ := os.ReadFile(auditPath); return string(b) }, eventually, poll).Should(
			And(ContainSubstring(`"keyId":"`+ak.Status.CurrentKeyID+`"`), ContainSubstring(`"INSUFFICIENT_SCOPE"`), ContainSubstring(`"namespace":"`+ns+`"`)))
		b, _ := os.ReadFile(auditPath)
		Expect(strings.Contains(string(b), key)).To(BeFalse())
	})

	It("writes every decision it made before a stop returns, and stops without waiting out its shutdown timeout", func() {
		_, key := issue(newNamespace(), "stopped")
		audit := filepath.Join(GinkgoT().TempDir(), "audit.log")
		v, err := operator.NewVerifierManager(cfg, operator.VerifierOptions{
			MetricsBindAddress: "0", HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", AuditSink: audit, Clock: clk},
		})
		Expect(err).NotTo(HaveOccurred())
		stop := testenv.Run(v)
		DeferCleanup(func() { _ = stop() })
		url := "http://" + v.Verifier.HTTPAddr()
		Eventually(func() int { return authzAt(url, key) }, eventually, poll).Should(Equal(http.StatusOK))
		// A client that keeps its connection open, as proxies do.
		cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		const n = 20
		for range n {
			resp, err := cl.Post(url+"/v1/verify", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		start := time.Now()
		Expect(stop()).To(Succeed())
		// The servers' shutdown timeout is 10 s; the audit trail used to wait it out for servers that
		// controller-runtime stops only after the trail's runnable.
		Expect(time.Since(start)).To(BeNumerically("<", 9*time.Second))
		b, err := os.ReadFile(audit)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(b), `"code":"VALID"`)).To(BeNumerically(">=", n+1), "every decision is in the trail once the stop returned")
		Expect(v.Verifier.Service.Audit.DroppedFor(verify.DropClosed)).To(BeZero())
	})

	It("fails closed until its informer has synced, then serves", func() {
		// A verifier whose user may not list ApiKeys yet cannot sync.
		const user = "verifier-granted-late"
		restricted := rest.CopyConfig(cfg)
		restricted.Impersonate = rest.ImpersonationConfig{UserName: user}
		v := startVerifier(restricted, "")
		url := "http://" + v.Verifier.HTTPAddr()
		_, key := issue(newNamespace(), "valid-elsewhere")
		Eventually(func() int { return authzAt(url, key) }, eventually, poll).Should(Equal(http.StatusServiceUnavailable))
		Consistently(func() int { return authzAt(url, key) }, 2*time.Second, 100*time.Millisecond).Should(Equal(http.StatusServiceUnavailable))
		resp, err := http.Post(url+"/v1/verify", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
		resp, err = http.Get(url + "/readyz")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))

		By("once it may list ApiKeys, it syncs and accepts")
		grant("config/rbac/verifier_role.yaml", user)
		Eventually(func() int { return authzAt(url, key) }, eventually, poll).Should(Equal(http.StatusOK))
	})

	It("runs standalone with only the verifier ClusterRole (no Secret access), scoped to namespaces", func() {
		ns := newNamespace()
		other := newNamespace()
		_, key := issue(ns, "scoped")
		_, otherKey := issue(other, "elsewhere")
		user := grant("config/rbac/verifier_role.yaml", "standalone-verifier")
		restricted := rest.CopyConfig(cfg)
		restricted.Impersonate = rest.ImpersonationConfig{UserName: user}
		v := startVerifier(restricted, ns)
		url := "http://" + v.Verifier.HTTPAddr()
		Eventually(func() int { return authzAt(url, key) }, eventually, poll).Should(Equal(http.StatusOK))
		Expect(authzAt(url, otherKey)).To(Equal(http.StatusUnauthorized), "out of scope")
	})
})

// statusPatches returns the successful status patches to ApiKeys in ns.
func statusPatches(ns string) []string {
	var out []string
	for _, w := range writes.In(ns) {
		if w.Resource == "apikeys/status" {
			out = append(out, w.String())
		}
	}
	sort.Strings(out)
	return out
}

// startVerifier starts a standalone verifier (keysmith verifier) with cfg's credentials.
func startVerifier(cfg *rest.Config, namespaces string) *operator.Manager {
	v, err := operator.NewVerifierManager(cfg, operator.VerifierOptions{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", Namespaces: namespaces,
			AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log"), Clock: clk},
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

func authzAt(url, key string) int {
	req, _ := http.NewRequest(http.MethodGet, url+"/authz", nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode
}

// grant installs the ClusterRole in path (relative to the module root), binds it to user and returns
// the user's name.
func grant(path, user string) string {
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.Unmarshal(b, role)).To(Succeed())
	ctx := context.Background()
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, role))).To(Succeed())
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}))).To(Succeed())
	return user
}

var _ = Describe("The verifier after lifecycle revocations", func() {
	It("refuses a manually revoked key on the next request", func() {
		ns := newNamespace()
		ak, key := issue(ns, "manual")
		start := time.Now()
		annotate(ns, "manual", v1alpha1.AnnotationRevoke, ak.Status.CurrentKeyID)
		Eventually(func() verify.Code { return code(key) }, eventually, time.Millisecond).Should(Equal(verify.CodeRevoked))
		GinkgoWriter.Printf("keysmith.dev/revoke: key refused %s after the annotation\n", time.Since(start))
		_, fresh := waitKey(ns, "manual", ak.Status.CurrentKeyID)
		Expect(code(fresh)).To(Equal(verify.CodeValid))
	})

	It("refuses an unused key once revoked, and an expired key at its notAfter", func() {
		ns := newNamespace()
		idle, idleKey := issue(ns, "idle", func(ak *v1alpha1.ApiKey) { ak.Spec.RevokeUnusedAfter = &metav1.Duration{Duration: time.Hour} })
		_, endingKey := issue(ns, "ending", func(ak *v1alpha1.ApiKey) { ak.Spec.ExpiresAfter = &metav1.Duration{Duration: 2 * time.Hour} })
		clk.SetTime(idle.Status.Keys[0].IssuedAt.Add(time.Hour))
		annotate(ns, "idle", "test.keysmith.dev/poke", "1")
		Eventually(func() verify.Code { return code(idleKey) }, eventually, poll).Should(Equal(verify.CodeRevoked))

		ending := get(ns, "ending")
		clk.SetTime(ending.Status.Keys[0].NotAfter.Time)
		Expect(code(endingKey)).To(Equal(verify.CodeExpired), "refused at notAfter, before the operator marks it")
		annotate(ns, "ending", "test.keysmith.dev/poke", "1")
		Eventually(func() v1alpha1.KeyState { return get(ns, "ending").Status.Keys[0].State }, eventually, poll).Should(Equal(v1alpha1.KeyExpired))
		Expect(code(endingKey)).To(Equal(verify.CodeExpired))
	})

	It("refuses every key of a disabled ApiKey", func() {
		ns := newNamespace()
		_, key := issue(ns, "off")
		ak := get(ns, "off")
		ak.Spec.Disabled = true
		Expect(k8s.Update(context.Background(), ak)).To(Succeed())
		Eventually(func() verify.Code { return code(key) }, eventually, time.Millisecond).Should(Equal(verify.CodeRevoked))
	})
})
