package tenant

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

const (
	eventually = 20 * time.Second
	poll       = 20 * time.Millisecond
)

var ctx = context.Background()

func newNamespace(labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tenant-", Labels: labels}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func get(ns, name string) *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
	return ak
}

// issue creates an ApiKey with scopes and returns it once Ready, with the key from its Secret, once the
// standalone verifier accepts it.
func issue(ns, name string, scopes ...string) (*v1alpha1.ApiKey, string) {
	Expect(k8s.Create(ctx, &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: scopes, SecretName: name + "-key"},
	})).To(Succeed())
	var ak *v1alpha1.ApiKey
	var key string
	Eventually(func(g Gomega) {
		ak = get(ns, name)
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-key"}, s)).To(Succeed())
		key = string(s.Data[v1alpha1.SecretKeyAPIKey])
		g.Expect(keys.ID(key)).To(Equal(ak.Status.CurrentKeyID))
		g.Expect(httpCode(key)).To(Equal(verify.CodeValid))
	}, eventually, poll).Should(Succeed())
	return ak, key
}

func update(ns, name string, mutate func(*v1alpha1.ApiKey)) {
	Eventually(func() error {
		ak := get(ns, name)
		mutate(ak)
		return k8s.Update(ctx, ak)
	}, eventually, poll).Should(Succeed())
}

// httpCode asks the standalone verifier's POST /v1/verify.
func httpCode(key string, scopes ...string) verify.Code {
	b, _ := json.Marshal(verify.VerifyRequest{Key: key, Scopes: scopes})
	resp, err := http.Post("http://"+verifier.Verifier.HTTPAddr()+"/v1/verify", "application/json", bytes.NewReader(b))
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return verify.Code(resp.Status)
	}
	var out verify.VerifyResponse
	Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	return out.Code
}

// grpcCode asks the standalone verifier's Envoy ext_authz gRPC API, with the scopes in the route's
// context_extensions.
func grpcCode(key string, scopes string) rpccode.Code {
	conn, err := grpc.NewClient(verifier.Verifier.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	out, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Headers: map[string]string{"authorization": "Bearer " + key}}},
		ContextExtensions: map[string]string{"scopes": scopes},
	}})
	Expect(err).NotTo(HaveOccurred())
	return rpccode.Code(out.GetStatus().GetCode())
}

func policy(name string, ns map[string]string, enforcement v1alpha1.Enforcement, allowed ...v1alpha1.ScopePattern) *v1alpha1.ApiKeyPolicy {
	p := &v1alpha1.ApiKeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ApiKeyPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: ns}, AllowedScopes: allowed, Enforcement: enforcement}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, p))).To(Succeed()) })
	return p
}

func stalledReason(ns, name string) string {
	c := meta.FindStatusCondition(get(ns, name).Status.Conditions, v1alpha1.ConditionStalled)
	if c == nil || c.Status != metav1.ConditionTrue {
		return ""
	}
	return c.Reason
}

type target struct{ ns, key string }

// unpoliced is a key issued in a namespace that no policy selects, before deny by default.
var unpoliced target

var _ = Describe("Tenant-safe verification", Ordered, ContinueOnFailure, func() {
	Context("grants come from the operator", func() {
		It("keeps a scope that a policy forbids closed when a namespace editor adds it to an ApiKey with a key", func() {
			team := map[string]string{"tenant.keysmith.dev/team": "grant-block"}
			ns := newNamespace(team)
			policy("users-only-block", team, v1alpha1.EnforcementBlock, "users:*")
			_, key := issue(ns, "svc", "users:read")
			Expect(get(ns, "svc").Status.Keys[0].Scopes).To(Equal([]string{"users:read"}), "status records the grant")

			By("the editor adds admin:write")
			update(ns, "svc", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = append(ak.Spec.Scopes, "admin:write") })
			Eventually(func() string { return stalledReason(ns, "svc") }, eventually, poll).Should(Equal(v1alpha1.ReasonPolicyViolation))
			Consistently(func(g Gomega) {
				g.Expect(httpCode(key, "admin:write")).To(Equal(verify.CodeInsufficientScope))
				g.Expect(grpcCode(key, "admin:write")).To(Equal(rpccode.Code_PERMISSION_DENIED))
			}, 2*time.Second, 100*time.Millisecond).Should(Succeed())
			By("Block keeps the key valid for what the policy allows")
			Expect(httpCode(key, "users:read")).To(Equal(verify.CodeValid))
			Expect(grpcCode(key, "users:read")).To(Equal(rpccode.Code_OK))
			Expect(get(ns, "svc").Status.Keys[0].Scopes).To(Equal([]string{"users:read"}))
		})

		It("opens an added scope once the operator has granted it", func() {
			ns := newNamespace(nil)
			_, key := issue(ns, "svc", "users:read")
			unpoliced = target{ns: ns, key: key}
			update(ns, "svc", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = append(ak.Spec.Scopes, "users:write") })
			Eventually(func() []string { return get(ns, "svc").Status.Keys[0].Scopes }, eventually, poll).Should(ConsistOf("users:read", "users:write"))
			Eventually(func() verify.Code { return httpCode(key, "users:write") }, eventually, poll).Should(Equal(verify.CodeValid))
			Expect(grpcCode(key, "users:write")).To(Equal(rpccode.Code_OK))
		})

		It("applies a policy change to keys already issued: Block drops the scope, Revoke revokes", func() {
			team := map[string]string{"tenant.keysmith.dev/team": "policy-change"}
			ns := newNamespace(team)
			_, key := issue(ns, "svc", "users:read", "audit:read")
			Expect(httpCode(key, "audit:read")).To(Equal(verify.CodeValid))

			p := policy("users-only-change", team, v1alpha1.EnforcementBlock, "users:*")
			Eventually(func() verify.Code { return httpCode(key, "audit:read") }, eventually, poll).Should(Equal(verify.CodeInsufficientScope))
			Expect(grpcCode(key, "audit:read")).To(Equal(rpccode.Code_PERMISSION_DENIED))
			Expect(httpCode(key, "users:read")).To(Equal(verify.CodeValid))

			Eventually(func() error {
				Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
				p.Spec.Enforcement = v1alpha1.EnforcementRevoke
				return k8s.Update(ctx, p)
			}, eventually, poll).Should(Succeed())
			Eventually(func() verify.Code { return httpCode(key, "users:read") }, eventually, poll).Should(Equal(verify.CodeRevoked))
			Expect(grpcCode(key, "users:read")).To(Equal(rpccode.Code_UNAUTHENTICATED))
			Expect(get(ns, "svc").Status.Keys[0].Reason).To(Equal(v1alpha1.RevokedPolicy))
		})
	})

	Context("with the operator running", func() {
		It("records a revocation requested while the ApiKey breaks a policy, so it holds once the annotation is gone", func() {
			team := map[string]string{"tenant.keysmith.dev/team": "revoke-blocked"}
			ns := newNamespace(team)
			_, key := issue(ns, "svc", "users:read", "audit:read")
			policy("users-only-revoke", team, v1alpha1.EnforcementBlock, "users:*")
			Eventually(func() string { return stalledReason(ns, "svc") }, eventually, poll).Should(Equal(v1alpha1.ReasonPolicyViolation))
			id := keys.ID(key)
			update(ns, "svc", func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: id} })
			Eventually(func() v1alpha1.KeyState { return get(ns, "svc").Status.Keys[0].State }, eventually, poll).Should(Equal(v1alpha1.KeyRevoked))
			Expect(get(ns, "svc").Status.Keys[0].Reason).To(Equal(v1alpha1.RevokedManual))
			update(ns, "svc", func(ak *v1alpha1.ApiKey) { delete(ak.Annotations, v1alpha1.AnnotationRevoke) })
			Consistently(func() verify.Code { return httpCode(key, "users:read") }, time.Second, 50*time.Millisecond).Should(Equal(verify.CodeRevoked))
		})

		It("keeps the grant of a key retiring during its overlap", func() {
			ns := newNamespace(nil)
			first, oldKey := issue(ns, "svc", "users:read")
			update(ns, "svc", func(ak *v1alpha1.ApiKey) {
				ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}, Overlap: &metav1.Duration{Duration: time.Hour}}
				ak.Annotations = map[string]string{v1alpha1.AnnotationRotate: "1"}
			})
			Eventually(func() string { return get(ns, "svc").Status.CurrentKeyID }, eventually, poll).ShouldNot(Equal(first.Status.CurrentKeyID))
			ak := get(ns, "svc")
			Expect(ak.Status.Keys[1].State).To(Equal(v1alpha1.KeyRetiring))
			Expect(ak.Status.Keys[1].Scopes).To(Equal([]string{"users:read"}))
			Expect(httpCode(oldKey, "users:read")).To(Equal(verify.CodeValid))
		})

		It("records the grant again when another writer drops it (a replica of an earlier release during an upgrade)", func() {
			ns := newNamespace(nil)
			_, key := issue(ns, "svc", "users:read")
			ak := get(ns, "svc")
			base := ak.DeepCopy()
			ak.Status.Keys[0].Scopes = nil
			Expect(k8s.Status().Patch(ctx, ak, client.MergeFrom(base))).To(Succeed())
			Eventually(func() []string { return get(ns, "svc").Status.Keys[0].Scopes }, eventually, poll).Should(Equal([]string{"users:read"}))
			Eventually(func() verify.Code { return httpCode(key, "users:read") }, eventually, poll).Should(Equal(verify.CodeValid))
		})
	})

	Context("with no manager running", func() {
		var disable, revokeOne, revokeAll, deleted, narrowed, blocked target

		BeforeAll(func() {
			ns := newNamespace(nil)
			for _, t := range []*target{&disable, &revokeOne, &revokeAll, &deleted, &narrowed, &blocked} {
				t.ns = ns
			}
			_, disable.key = issue(ns, "disable", "users:read")
			_, revokeOne.key = issue(ns, "revoke-one", "users:read")
			_, revokeAll.key = issue(ns, "revoke-all", "users:read")
			_, deleted.key = issue(ns, "deleted", "users:read")
			_, narrowed.key = issue(ns, "narrowed", "users:read", "users:write")
			_, blocked.key = issue(ns, "blocked", "users:read")
			stopManager()
		})

		// refusedWithin measures how long the standalone verifier takes to refuse key after change.
		refusedWithin := func(key string, scope string, change func()) time.Duration {
			start := time.Now()
			change()
			Eventually(func() verify.Code { return httpCode(key, scope) }, 5*time.Second, 5*time.Millisecond).ShouldNot(Equal(verify.CodeValid))
			took := time.Since(start)
			GinkgoWriter.Printf("refused %s after the change\n", took)
			return took
		}

		It("refuses keys at once on spec.disabled", func() {
			Expect(refusedWithin(disable.key, "users:read", func() { update(disable.ns, "disable", func(ak *v1alpha1.ApiKey) { ak.Spec.Disabled = true }) })).
				To(BeNumerically("<", time.Second))
			Expect(httpCode(disable.key)).To(Equal(verify.CodeRevoked))
			Expect(grpcCode(disable.key, "")).To(Equal(rpccode.Code_UNAUTHENTICATED))
		})

		It("refuses the keys keysmith.dev/revoke names, by id or all", func() {
			id := keys.ID(revokeOne.key)
			Expect(refusedWithin(revokeOne.key, "users:read", func() {
				update(revokeOne.ns, "revoke-one", func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: id} })
			})).To(BeNumerically("<", time.Second))
			Expect(httpCode(revokeOne.key)).To(Equal(verify.CodeRevoked))
			Expect(refusedWithin(revokeAll.key, "users:read", func() {
				update(revokeAll.ns, "revoke-all", func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "all"} })
			})).To(BeNumerically("<", time.Second))
			Expect(grpcCode(revokeAll.key, "")).To(Equal(rpccode.Code_UNAUTHENTICATED))
		})

		It("refuses a deleted ApiKey's keys", func() {
			Expect(refusedWithin(deleted.key, "users:read", func() {
				Expect(k8s.Delete(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: deleted.ns, Name: "deleted"}})).To(Succeed())
			})).To(BeNumerically("<", time.Second))
			Expect(httpCode(deleted.key)).To(Equal(verify.CodeRevoked))
		})

		It("refuses a scope removed from the spec at once", func() {
			Expect(refusedWithin(narrowed.key, "users:write", func() {
				update(narrowed.ns, "narrowed", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"users:read"} })
			})).To(BeNumerically("<", time.Second))
			Expect(httpCode(narrowed.key, "users:write")).To(Equal(verify.CodeInsufficientScope))
			Expect(httpCode(narrowed.key, "users:read")).To(Equal(verify.CodeValid))
			By("and adding it back opens nothing without the operator")
			update(narrowed.ns, "narrowed", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"users:read", "users:write", "admin:write"} })
			Consistently(func() verify.Code { return httpCode(narrowed.key, "admin:write") }, time.Second, 50*time.Millisecond).Should(Equal(verify.CodeInsufficientScope))
		})

		It("follows revocations when its ApiKey watch is refused with 429 while pings succeed", func() {
			Expect(verifier.Verifier.Index.Ready()).To(Succeed())
			watches.block()
			DeferCleanup(watches.unblock)
			Eventually(watches.refusals, eventually, poll).Should(BeNumerically(">", 0), "the watch was reopened and refused")
			took := refusedWithin(blocked.key, "users:read", func() {
				update(blocked.ns, "blocked", func(ak *v1alpha1.ApiKey) { ak.Spec.Disabled = true })
			})
			GinkgoWriter.Printf("with the watch refused, the revocation took effect after %s\n", took)
			Expect(took).To(BeNumerically("<", 4*time.Second), "the watch grace (2 s) plus one probe listing (1 s)")
			Expect(httpCode(blocked.key)).To(Equal(verify.CodeRevoked))
			Expect(verifier.Verifier.Index.Ready()).To(Succeed(), "answers from the probe's lists, which are current")
		})
	})

	Context("deny by default (--require-policy)", func() {
		BeforeAll(func() {
			stopManager() // the first manager, if a spec before left it running
			mgr, err := operator.NewManager(cfg, operator.Options{
				MetricsBindAddress: "0", HealthProbeBindAddress: "0", RequirePolicy: true,
				Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: GinkgoT().TempDir() + "/manager-audit.log"},
			})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(run(mgr))
		})

		It("issues no key in a namespace that no policy grants scopes, with a clear message, until one does", func() {
			team := map[string]string{"tenant.keysmith.dev/team": "deny-default"}
			ns := newNamespace(team)
			Expect(k8s.Create(ctx, &v1alpha1.ApiKey{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc"},
				Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "svc-key"},
			})).To(Succeed())
			Eventually(func() string { return stalledReason(ns, "svc") }, eventually, poll).Should(Equal(v1alpha1.ReasonPolicyViolation))
			c := meta.FindStatusCondition(get(ns, "svc").Status.Conditions, v1alpha1.ConditionStalled)
			Expect(c.Message).To(ContainSubstring("no ApiKeyPolicy with allowedScopes selects namespace " + ns))
			Expect(c.Message).To(ContainSubstring("--require-policy"))
			Expect(get(ns, "svc").Status.Keys).To(BeEmpty())
			Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "svc-key"}, &corev1.Secret{}))).To(BeTrue(), "no Secret")

			By("a policy that grants scopes to the namespace lets the key be issued")
			policy("deny-default-grant", team, v1alpha1.EnforcementBlock, "users:*")
			Eventually(func() bool {
				return meta.IsStatusConditionTrue(get(ns, "svc").Status.Conditions, v1alpha1.ConditionReady)
			}, eventually, poll).Should(BeTrue())
		})

		It("grants nothing to keys issued before in namespaces without such a policy", func() {
			Expect(unpoliced.key).NotTo(BeEmpty())
			Eventually(func() verify.Code { return httpCode(unpoliced.key, "users:read") }, eventually, poll).Should(Equal(verify.CodeInsufficientScope))
			Expect(get(unpoliced.ns, "svc").Status.Keys[0].Scopes).To(BeEmpty())
		})
	})
})
