package rbac

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// policyMessage starts every refusal of config/verifier/policy.yaml.
const policyMessage = "keysmith-verifier may only move status.lastUsedAt and status.keys[].lastUsedAt forward"

// fixture is an ApiKey with a full status, as keysmith writes it: an Active key (used 30 minutes ago) and
// a Revoked one (never used).
type fixture struct {
	ns, name         string
	activeKey        string // plaintext of the Active key
	active, revoked  string // key ids
	lastUsed, issued time.Time
}

func newFixture() fixture {
	ctx := context.Background()
	ns := newNamespace("tenant", nil)
	now := time.Now().UTC().Truncate(time.Second)
	gen := func() (string, string, string) {
		k, err := keys.Generate(keys.DefaultPrefix, "live")
		Expect(err).NotTo(HaveOccurred())
		p := k.Plaintext()
		return p, keys.ID(p), keys.Hash(p)
	}
	activePlain, activeID, activeHash := gen()
	_, revokedID, revokedHash := gen()
	f := fixture{ns: ns, name: "billing-api", activeKey: activePlain, active: activeID, revoked: revokedID,
		lastUsed: now.Add(-30 * time.Minute), issued: now.Add(-time.Hour)}

	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: f.name,
			Labels:      map[string]string{"team": "payments"},
			Annotations: map[string]string{"note": "fixture"},
			Finalizers:  []string{"keysmith.dev/revoke-keys"},
		},
		Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "organizations:read"}, SecretName: "billing-api-key"},
	}
	Expect(k8s.Create(ctx, ak)).To(Succeed())
	t := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	ak.Status = v1alpha1.ApiKeyStatus{
		ObservedGeneration: ak.Generation,
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "KeyActive",
			Message: "Key " + activeID + " is active", LastTransitionTime: *t(-time.Hour), ObservedGeneration: ak.Generation}},
		CurrentKeyID:         activeID,
		NextRotationAt:       t(720 * time.Hour),
		Effective:            &v1alpha1.EffectiveSettings{Environment: v1alpha1.EnvironmentLive, ExpiresAfter: metav1.Duration{Duration: 2160 * time.Hour}, ExpiryWarning: metav1.Duration{Duration: 336 * time.Hour}},
		HandledRotateRequest: "rotate-1",
		HandledRevokeRequest: "revoke-1",
		LastUsedAt:           t(-30 * time.Minute),
		Keys: []v1alpha1.IssuedKey{
			{ID: activeID, Hash: activeHash, State: v1alpha1.KeyActive, IssuedAt: *t(-time.Hour), NotAfter: *t(2159 * time.Hour),
				Scopes: []string{"users:read", "organizations:read"}, LastUsedAt: t(-30 * time.Minute)},
			{ID: revokedID, Hash: revokedHash, State: v1alpha1.KeyRevoked, IssuedAt: *t(-48 * time.Hour), NotAfter: *t(2112 * time.Hour),
				RevokedAt: t(-2 * time.Hour), Reason: "Manual", Scopes: []string{"users:read"}},
		},
	}
	Expect(k8s.Status().Update(ctx, ak)).To(Succeed())
	return f
}

func (f fixture) get() *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: f.name}, ak)).To(Succeed())
	return ak
}

func keyByID(ak *v1alpha1.ApiKey, id string) *v1alpha1.IssuedKey {
	for i := range ak.Status.Keys {
		if ak.Status.Keys[i].ID == id {
			return &ak.Status.Keys[i]
		}
	}
	Fail("no key " + id)
	return nil
}

// patchStatus writes mutate's change to the status the way the verifier does (internal/verify/lastused.go):
// a merge patch of the status subresource with an optimistic lock.
func patchStatus(c client.Client, f fixture, mutate func(*v1alpha1.ApiKey), opts ...client.SubResourcePatchOption) error {
	ak := f.get()
	base := ak.DeepCopy()
	mutate(ak)
	return c.Status().Patch(context.Background(), ak, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}), opts...)
}

// patchObject is the same for the ApiKey itself (spec and metadata).
func patchObject(c client.Client, f fixture, mutate func(*v1alpha1.ApiKey)) error {
	ak := f.get()
	base := ak.DeepCopy()
	mutate(ak)
	return c.Patch(context.Background(), ak, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

func refusedByPolicy(err error, field string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "the verifier's write went through")
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "expected 403 Forbidden, got %v", err)
	Expect(err.Error()).To(ContainSubstring(policyMessage))
	Expect(err.Error()).To(ContainSubstring(field))
	GinkgoWriter.Println("refused:", err)
}

func refusedByRBAC(err error) {
	GinkgoHelper()
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "expected 403 Forbidden, got %v", err)
	Expect(err.Error()).To(ContainSubstring(`User "` + serviceAccountUser(systemNamespace, verifierSA) + `" cannot`))
	Expect(err.Error()).NotTo(ContainSubstring(policyMessage))
}

// waitForPolicy waits until the API server enforces config/verifier/policy.yaml (its admission plugin
// picks policies up from an informer), probing with a dry-run write that it must refuse.
func waitForPolicy(verifier client.Client) {
	f := newFixture()
	Eventually(func() error {
		return patchStatus(verifier, f, func(ak *v1alpha1.ApiKey) { ak.Status.CurrentKeyID = "probe" }, client.DryRunAll)
	}, 30*time.Second, 200*time.Millisecond).Should(MatchError(ContainSubstring(policyMessage)))
}

var _ = Describe("The standalone verifier's ServiceAccount", Ordered, func() {
	var verifier client.Client // authenticated as system:serviceaccount:keysmith-system:keysmith-verifier

	BeforeAll(func() {
		verifier = impersonate(systemNamespace, verifierSA)
		waitForPolicy(verifier)
	})

	It("has a minimal ClusterRole: get, list and watch ApiKeys, patch their status; nothing on Secrets", func() {
		role := readManifests("config/rbac/verifier_role.yaml")
		Expect(role).To(HaveLen(1))
		Expect(role[0].Object["rules"]).To(Equal([]any{
			map[string]any{"apiGroups": []any{"keysmith.dev"}, "resources": []any{"apikeys"}, "verbs": []any{"get", "list", "watch"}},
			map[string]any{"apiGroups": []any{"keysmith.dev"}, "resources": []any{"apikeys/status"}, "verbs": []any{"patch"}},
		}))
		// Ask the API server what the ServiceAccount may do, as `kubectl auth can-i --as` would.
		can := func(verb, group, resource, subresource string) bool {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "default", Verb: verb, Group: group, Resource: resource, Subresource: subresource}}}
			Expect(verifier.Create(context.Background(), review)).To(Succeed())
			return review.Status.Allowed
		}
		for _, verb := range []string{"get", "list", "watch"} {
			Expect(can(verb, "keysmith.dev", "apikeys", "")).To(BeTrue(), verb+" apikeys")
		}
		Expect(can("patch", "keysmith.dev", "apikeys", "status")).To(BeTrue(), "patch apikeys/status")
		for _, denied := range [][4]string{
			{"update", "keysmith.dev", "apikeys", "status"},
			{"create", "keysmith.dev", "apikeys", ""}, {"update", "keysmith.dev", "apikeys", ""},
			{"patch", "keysmith.dev", "apikeys", ""}, {"delete", "keysmith.dev", "apikeys", ""},
			{"update", "keysmith.dev", "apikeys", "finalizers"},
			{"get", "", "secrets", ""}, {"list", "", "secrets", ""}, {"watch", "", "secrets", ""},
			{"create", "", "secrets", ""}, {"update", "", "secrets", ""},
			{"list", "keysmith.dev", "apikeypolicies", ""}, {"create", "", "events", ""},
		} {
			Expect(can(denied[0], denied[1], denied[2], denied[3])).To(BeFalse(), "%v", denied)
		}
	})

	It("cannot read Secrets", func() {
		ctx := context.Background()
		f := newFixture()
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "billing-api-key"},
			StringData: map[string]string{"api-key": f.activeKey}})).To(Succeed())
		refusedByRBAC(verifier.Get(ctx, types.NamespacedName{Namespace: f.ns, Name: "billing-api-key"}, &corev1.Secret{}))
		refusedByRBAC(verifier.List(ctx, &corev1.SecretList{}, client.InNamespace(f.ns)))
		refusedByRBAC(verifier.List(ctx, &corev1.SecretList{}))
	})

	It("moves lastUsedAt forward, on a key that was used and on one that never was", func() {
		f := newFixture()
		later := metav1.NewTime(f.lastUsed.Add(10 * time.Minute))
		Expect(patchStatus(verifier, f, func(ak *v1alpha1.ApiKey) {
			keyByID(ak, f.active).LastUsedAt = &later
			keyByID(ak, f.revoked).LastUsedAt = &later
			ak.Status.LastUsedAt = &later
		})).To(Succeed())
		ak := f.get()
		Expect(keyByID(ak, f.active).LastUsedAt.Time).To(BeTemporally("==", later.Time))
		Expect(keyByID(ak, f.revoked).LastUsedAt.Time).To(BeTemporally("==", later.Time))
		Expect(ak.Status.LastUsedAt.Time).To(BeTemporally("==", later.Time))
	})

	DescribeTable("is refused any other change to the status",
		func(field string, mutate func(f fixture, ak *v1alpha1.ApiKey)) {
			f := newFixture()
			before := f.get().Status
			err := patchStatus(verifier, f, func(ak *v1alpha1.ApiKey) { mutate(f, ak) })
			refusedByPolicy(err, strings.NewReplacer("%ACTIVE%", f.active, "%REVOKED%", f.revoked).Replace(field))
			Expect(f.get().Status).To(Equal(before), "the status changed")
		},
		Entry("adding a key (a hash of the attacker's own key)", "status.keys (ids added, removed or reordered)", func(f fixture, ak *v1alpha1.ApiKey) {
			plain := "ks_live_attacker"
			ak.Status.Keys = append([]v1alpha1.IssuedKey{{ID: keys.ID(plain), Hash: keys.Hash(plain), State: v1alpha1.KeyActive,
				IssuedAt: metav1.Now(), NotAfter: metav1.NewTime(time.Now().Add(24 * 365 * time.Hour)), Scopes: []string{"users:read"}}}, ak.Status.Keys...)
		}),
		Entry("replacing a key's hash", "status.keys[%ACTIVE%].hash", func(f fixture, ak *v1alpha1.ApiKey) {
			keyByID(ak, f.active).Hash = keys.Hash("ks_live_attacker")
		}),
		Entry("extending a key's notAfter", "status.keys[%ACTIVE%].notAfter", func(f fixture, ak *v1alpha1.ApiKey) {
			k := keyByID(ak, f.active)
			k.NotAfter = metav1.NewTime(k.NotAfter.Add(365 * 24 * time.Hour))
		}),
		Entry("un-revoking a key (state Revoked -> Active)", "status.keys[%REVOKED%].state", func(f fixture, ak *v1alpha1.ApiKey) {
			k := keyByID(ak, f.revoked)
			k.State, k.RevokedAt, k.Reason = v1alpha1.KeyActive, nil, ""
		}),
		Entry("clearing a key's revokedAt", "status.keys[%REVOKED%].revokedAt", func(f fixture, ak *v1alpha1.ApiKey) {
			keyByID(ak, f.revoked).RevokedAt = nil
		}),
		Entry("changing a revocation reason", "status.keys[%REVOKED%].reason", func(f fixture, ak *v1alpha1.ApiKey) {
			keyByID(ak, f.revoked).Reason = "Rotated"
		}),
		Entry("widening a key's granted scopes", "status.keys[%ACTIVE%].scopes", func(f fixture, ak *v1alpha1.ApiKey) {
			k := keyByID(ak, f.active)
			k.Scopes = append(k.Scopes, "roles:manage")
		}),
		Entry("moving a key's issuedAt", "status.keys[%ACTIVE%].issuedAt", func(f fixture, ak *v1alpha1.ApiKey) {
			keyByID(ak, f.active).IssuedAt = metav1.Now()
		}),
		Entry("removing a key", "status.keys (ids added, removed or reordered)", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.Keys = ak.Status.Keys[:1]
		}),
		Entry("reordering the keys", "status.keys (ids added, removed or reordered)", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.Keys[0], ak.Status.Keys[1] = ak.Status.Keys[1], ak.Status.Keys[0]
		}),
		Entry("rewriting a condition", "status.conditions", func(f fixture, ak *v1alpha1.ApiKey) {
			meta.SetStatusCondition(&ak.Status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "Disabled", Message: "x"})
		}),
		Entry("adding a condition", "status.conditions", func(f fixture, ak *v1alpha1.ApiKey) {
			meta.SetStatusCondition(&ak.Status.Conditions, metav1.Condition{Type: "Stalled", Status: metav1.ConditionTrue, Reason: "InvalidSpec", Message: "x"})
		}),
		Entry("changing currentKeyID", "status.currentKeyID", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.CurrentKeyID = f.revoked
		}),
		Entry("postponing nextRotationAt", "status.nextRotationAt", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.NextRotationAt = &metav1.Time{Time: ak.Status.NextRotationAt.Add(365 * 24 * time.Hour)}
		}),
		Entry("removing nextRotationAt", "status.nextRotationAt", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.NextRotationAt = nil
		}),
		Entry("changing the effective settings", "status.effective", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.Effective.ExpiresAfter = metav1.Duration{Duration: 87600 * time.Hour}
		}),
		Entry("changing observedGeneration", "status.observedGeneration", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.ObservedGeneration++
		}),
		Entry("forgetting the handled rotate request (it would be acted on again)", "status.handledRotateRequest", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.HandledRotateRequest = ""
		}),
		Entry("changing the handled revoke request", "status.handledRevokeRequest", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.HandledRevokeRequest = "all"
		}),
		Entry("moving a key's lastUsedAt back (toward revokeUnusedAfter)", "status.keys[%ACTIVE%].lastUsedAt (moved back)", func(f fixture, ak *v1alpha1.ApiKey) {
			keyByID(ak, f.active).LastUsedAt = &metav1.Time{Time: f.lastUsed.Add(-24 * time.Hour)}
		}),
		Entry("removing a key's lastUsedAt", "status.keys[%ACTIVE%].lastUsedAt (moved back)", func(f fixture, ak *v1alpha1.ApiKey) {
			keyByID(ak, f.active).LastUsedAt = nil
		}),
		Entry("moving status.lastUsedAt back", "status.lastUsedAt (moved back)", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status.LastUsedAt = &metav1.Time{Time: f.lastUsed.Add(-24 * time.Hour)}
		}),
		Entry("a legitimate lastUsedAt together with a forbidden change", "status.keys[%ACTIVE%].notAfter", func(f fixture, ak *v1alpha1.ApiKey) {
			k := keyByID(ak, f.active)
			later := metav1.NewTime(f.lastUsed.Add(time.Minute))
			k.LastUsedAt, ak.Status.LastUsedAt = &later, &later
			k.NotAfter = metav1.NewTime(k.NotAfter.Add(time.Hour))
		}),
		Entry("emptying the status", "status.keys (ids added, removed or reordered)", func(f fixture, ak *v1alpha1.ApiKey) {
			ak.Status = v1alpha1.ApiKeyStatus{}
		}),
	)

	It("is refused the README's check: a server-side dry run of a status change as the ServiceAccount", func() {
		f := newFixture()
		manifest := filepath.Join(GinkgoT().TempDir(), "check.yaml")
		Expect(os.WriteFile(manifest, []byte("apiVersion: keysmith.dev/v1alpha1\nkind: ApiKey\nmetadata: {name: "+f.name+", namespace: "+f.ns+"}\nstatus: {currentKeyID: x}\n"), 0o600)).To(Succeed())
		out, err := kubectl("apply", "--server-side", "--subresource=status", "--force-conflicts", "--field-manager=policy-check",
			"--dry-run=server", "--as="+serviceAccountUser(systemNamespace, verifierSA), "-f", manifest)
		GinkgoWriter.Println(out)
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(And(ContainSubstring("Error from server (Forbidden)"), ContainSubstring(policyMessage+"; refused: status.currentKeyID")))
		Expect(f.get().Status.CurrentKeyID).To(Equal(f.active))
	})

	It("cannot edit the spec or metadata: RBAC refuses the ApiKey itself, and the status subresource ignores them", func() {
		f := newFixture()
		before := f.get()
		refusedByRBAC(patchObject(verifier, f, func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = append(ak.Spec.Scopes, "roles:manage") }))
		refusedByRBAC(patchObject(verifier, f, func(ak *v1alpha1.ApiKey) { ak.Finalizers = nil }))
		refusedByRBAC(verifier.Delete(context.Background(), f.get()))
		// Through /status the API server keeps spec and metadata as they were (whether or not the policy sees them).
		_ = patchStatus(verifier, f, func(ak *v1alpha1.ApiKey) {
			ak.Spec.Scopes = append(ak.Spec.Scopes, "roles:manage")
			ak.Spec.Disabled = true
			ak.Labels["team"] = "attacker"
			ak.Finalizers = nil
		})
		after := f.get()
		Expect(after.Spec).To(Equal(before.Spec))
		Expect(after.Labels).To(Equal(before.Labels))
		Expect(after.Finalizers).To(Equal(before.Finalizers))
	})

	It("is refused spec and metadata changes by the policy too, should it ever be granted more than its ClusterRole", func() {
		ctx := context.Background()
		f := newFixture()
		extra := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "too-much-for-the-verifier"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"keysmith.dev"}, Resources: []string{"apikeys", "apikeys/status"}, Verbs: []string{"update", "patch"}}}}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "too-much-for-the-verifier"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: extra.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: systemNamespace, Name: verifierSA}}}
		Expect(k8s.Create(ctx, extra)).To(Succeed())
		Expect(k8s.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() {
			Expect(k8s.Delete(ctx, binding)).To(Succeed())
			Expect(k8s.Delete(ctx, extra)).To(Succeed())
		})
		spec := func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = append(ak.Spec.Scopes, "roles:manage") }
		Eventually(func() error { return patchObject(verifier, f, spec) }, 10*time.Second, 100*time.Millisecond).
			Should(MatchError(ContainSubstring(policyMessage)), "the extra grant never took effect")
		refusedByPolicy(patchObject(verifier, f, spec), "spec")
		refusedByPolicy(patchObject(verifier, f, func(ak *v1alpha1.ApiKey) { ak.Labels["team"] = "attacker" }), "metadata.labels")
		refusedByPolicy(patchObject(verifier, f, func(ak *v1alpha1.ApiKey) { ak.Annotations["keysmith.dev/rotate"] = "now" }), "metadata.annotations")
		refusedByPolicy(patchObject(verifier, f, func(ak *v1alpha1.ApiKey) { ak.Finalizers = nil }), "metadata.finalizers")
		refusedByPolicy(patchObject(verifier, f, func(ak *v1alpha1.ApiKey) {
			ak.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "0b7c7a5e-0000-4000-8000-000000000000"}}
		}), "metadata.ownerReferences")
		// An update (not a patch) of the status is refused the same way.
		ak := f.get()
		keyByID(ak, f.active).State = v1alpha1.KeyRetiring
		refusedByPolicy(verifier.Status().Update(ctx, ak), "status.keys["+f.active+"].state")
	})

	It("leaves every other identity alone: the manager's ServiceAccount still writes any status field", func() {
		f := newFixture()
		manager := impersonate(systemNamespace, managerSA)
		Expect(patchStatus(manager, f, func(ak *v1alpha1.ApiKey) {
			k := keyByID(ak, f.active)
			k.State, k.RevokedAt, k.Reason = v1alpha1.KeyRevoked, &metav1.Time{Time: time.Now()}, "Manual"
			ak.Status.CurrentKeyID = ""
		})).To(Succeed())
		Expect(keyByID(f.get(), f.active).State).To(Equal(v1alpha1.KeyRevoked))
	})

	It("still lets the real standalone verifier flush lastUsedAt", func() {
		f := newFixture()
		v, err := operator.NewVerifierManager(impersonatedConfig(systemNamespace, verifierSA), operator.VerifierOptions{
			MetricsBindAddress: "0", HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", Namespaces: f.ns, FlushInterval: time.Second,
				AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).NotTo(HaveOccurred())
		run(v)
		base := "http://" + v.Verifier.HTTPAddr()
		Eventually(func() testenv.Verdict { return testenv.VerifyKey(http.DefaultClient, base, f.activeKey) }, 30*time.Second, 100*time.Millisecond).
			Should(Equal(testenv.Accepted))
		used := time.Now().Truncate(time.Second)
		Eventually(func() *metav1.Time { return keyByID(f.get(), f.active).LastUsedAt }, 30*time.Second, 200*time.Millisecond).
			Should(HaveField("Time", BeTemporally(">=", used)))
		Expect(f.get().Status.LastUsedAt.Time).To(BeTemporally(">=", used))
		Expect(logs.String()).NotTo(ContainSubstring(policyMessage), "the verifier's own flush was refused")
	})

	It("compares every field of the ApiKey status and of each key except lastUsedAt", func() {
		policy := readManifests("config/verifier/policy.yaml")[0]
		vars, _, err := unstructured.NestedSlice(policy.Object, "spec", "variables")
		Expect(err).NotTo(HaveOccurred())
		var changed string
		for _, v := range vars {
			if v.(map[string]any)["name"] == "changed" {
				changed = v.(map[string]any)["expression"].(string)
			}
		}
		Expect(changed).NotTo(BeEmpty())
		for _, name := range jsonFields(reflect.TypeFor[v1alpha1.ApiKeyStatus]()) {
			if name != "keys" && name != "lastUsedAt" {
				Expect(changed).To(ContainSubstring("object.status."+name+" != oldObject.status."+name), "status.%s is not compared", name)
			}
		}
		for _, name := range jsonFields(reflect.TypeFor[v1alpha1.IssuedKey]()) {
			if name != "id" && name != "lastUsedAt" {
				Expect(changed).To(ContainSubstring("o."+name+" != k."+name), "status.keys[].%s is not compared", name)
			}
		}
		Expect(changed).To(ContainSubstring("object.spec != oldObject.spec"))
		for _, name := range []string{"labels", "annotations", "finalizers", "ownerReferences"} {
			Expect(changed).To(ContainSubstring("object.metadata." + name + " != oldObject.metadata." + name))
		}
	})
})

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
