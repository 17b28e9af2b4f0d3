package gitops

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/config/argocd"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// The live specs run keysmith's manager in this process against the real kube-apiserver, put ApiKeys in
// every state keysmith knows, and read each as Argo CD (the scripts from the argocd-cm the Component
// renders, applied to the API server and read back), kstatus and `kubectl wait` do. They share one
// control plane and one manager; each spec has its own namespace. The clock jump comes last.
var _ = Describe("Live ApiKeys on the real control plane", Ordered, func() {
	var (
		ctx     = context.Background()
		k8s     client.Client
		kubectl kubectlRunner
		gate    = &writeGate{blocked: map[string]bool{}, refused: map[string]int{}}
		clock   = &offsetClock{}
		scripts argocd.Scripts
		rt      = Runtime{}
	)

	BeforeAll(func() {
		env, cfg, err := testenv.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
		k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		kubectl = newKubectl(env)

		mcfg := rest.CopyConfig(cfg)
		mcfg.Wrap(gate.wrap)
		mgr, err := operator.NewManager(mcfg, operator.Options{
			MetricsBindAddress: "0", HealthProbeBindAddress: "0", Clock: clock,
			Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: GinkgoT().TempDir() + "/audit.log"},
		})
		Expect(err).NotTo(HaveOccurred())
		stop := testenv.Run(mgr)
		DeferCleanup(func() { Expect(stop()).To(Succeed()) })

		By("installing the argocd-cm patch of config/argocd as Argo CD would hold it, and reading the scripts back from the API server")
		root, err := moduleRoot()
		Expect(err).NotTo(HaveOccurred())
		b, err := os.ReadFile(filepath.Join(root, "config", "argocd", argocd.PatchFile))
		Expect(err).NotTo(HaveOccurred())
		cm := &corev1.ConfigMap{}
		Expect(yaml.UnmarshalStrict(b, cm)).To(Succeed())
		cm.Namespace = "argocd"
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "argocd"}})).To(Succeed())
		Expect(k8s.Create(ctx, cm)).To(Succeed())
		stored := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cm), stored)).To(Succeed())
		scripts, err = argocd.Parse(stored.Data)
		Expect(err).NotTo(HaveOccurred())
		Expect(scripts).To(Equal(readScripts()))
	})

	namespace := func(name string, labels map[string]string) string {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})).To(Succeed())
		return name
	}
	apiKey := func(ns, name string, mutate func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
		GinkgoHelper()
		ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.ApiKeySpec{
			Scopes: []string{"users:read"}, SecretName: name + "-key",
			Rotation: &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}}}}
		if mutate != nil {
			mutate(ak)
		}
		Expect(k8s.Create(ctx, ak)).To(Succeed())
		return ak
	}
	typed := func(ns, name string) *v1alpha1.ApiKey {
		GinkgoHelper()
		ak := &v1alpha1.ApiKey{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ak)).To(Succeed())
		return ak
	}
	health := func(obj map[string]any) HealthStatus {
		GinkgoHelper()
		hs, err := rt.Health(obj, scripts.Health)
		Expect(err).NotTo(HaveOccurred())
		return hs
	}
	kstatus := func(obj map[string]any) status.Status {
		GinkgoHelper()
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		Expect(err).NotTo(HaveOccurred())
		return res.Status
	}
	healthOf := func(ns, name string) func() HealthStatus {
		return func() HealthStatus { return health(getObject(ctx, k8s, ns, name)) }
	}
	kstatusOf := func(ns, name string) func() status.Status {
		return func() status.Status { return kstatus(getObject(ctx, k8s, ns, name)) }
	}
	// record writes the live object into $GITOPS_RECORD_DIR (when set), as test data is taken from a
	// real control plane; managedFields are left out.
	record := func(file string, obj map[string]any) {
		GinkgoHelper()
		dir := os.Getenv("GITOPS_RECORD_DIR")
		if dir == "" {
			return
		}
		u := &unstructured.Unstructured{Object: obj}
		u = u.DeepCopy()
		u.SetManagedFields(nil)
		b, err := yaml.Marshal(u.Object)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(dir, file), b, 0o644)).To(Succeed())
	}
	// runAction runs an action on the live object and sends what Argo CD's API server would: the merge
	// patch from the live object to the action's output. It returns the patch.
	runAction := func(ns, name, action string) string {
		GinkgoHelper()
		live := getObject(ctx, k8s, ns, name)
		offered, err := rt.Discover(live, scripts.Discovery)
		Expect(err).NotTo(HaveOccurred())
		Expect(offered).To(ContainElement(HaveField("Name", action)))
		for _, a := range offered {
			if a.Name == action {
				Expect(a.Disabled).To(BeFalse(), "discovery offers %s", action)
			}
		}
		out, err := rt.Action(live, scripts.Actions[action])
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(HaveLen(1))
		Expect(out[0].Operation).To(Equal("patch"))
		patch, err := MergePatch(getObject(ctx, k8s, ns, name), out[0].Object)
		Expect(err).NotTo(HaveOccurred())
		Expect(patch).NotTo(BeNil())
		Expect(CheckPatch(patch)).To(Succeed())
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(apiKeyGVK)
		u.SetNamespace(ns)
		u.SetName(name)
		Expect(k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		GinkgoWriter.Printf("action %s on %s/%s sent %s\n", action, ns, name, patch)
		return string(patch)
	}
	// mergePatch patches an ApiKey without a resourceVersion, so that keysmith's own writes in between
	// cannot make it conflict.
	mergePatch := func(ns, name, patch string) {
		GinkgoHelper()
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(apiKeyGVK)
		u.SetNamespace(ns)
		u.SetName(name)
		Expect(k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
	}
	disabledActions := func(obj map[string]any) []string {
		GinkgoHelper()
		offered, err := rt.Discover(obj, scripts.Discovery)
		Expect(err).NotTo(HaveOccurred())
		var off []string
		for _, a := range offered {
			if a.Disabled {
				off = append(off, a.Name)
			}
		}
		return off
	}
	keyState := func(ak *v1alpha1.ApiKey, id string) (string, string) {
		for _, k := range ak.Status.Keys {
			if k.ID == id {
				return string(k.State), k.Reason
			}
		}
		return "", ""
	}
	secretKeyLength := func(ns, name string) int {
		GinkgoHelper()
		s := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
		return len(s.Data[v1alpha1.SecretKeyAPIKey]) // the length only: a key is never printed
	}
	waitReady := func(ns, name, timeout string) (string, int) {
		GinkgoHelper()
		out, code, _ := kubectl.run("wait", "--for=condition=Ready", "apikey/"+name, "-n", ns, "--timeout="+timeout)
		return out, code
	}
	readyKey := func(ns, name string) *v1alpha1.ApiKey {
		GinkgoHelper()
		Eventually(healthOf(ns, name)).WithTimeout(20 * time.Second).Should(HaveField("Status", Healthy))
		return typed(ns, name)
	}

	It("no status yet: Progressing in Argo CD; kstatus reads it as Current (it cannot tell); kubectl wait times out", func() {
		ns := namespace("gitops-nostatus", nil)
		gate.block(ns, "secrets") // keysmith writes the first key's Secret before any status
		apiKey(ns, "fresh", nil)
		Eventually(func() int { return gate.refusals(ns, "secrets") }).WithTimeout(10 * time.Second).Should(BeNumerically(">", 0))
		obj := getObject(ctx, k8s, ns, "fresh")
		Expect(obj).NotTo(HaveKey("status"))
		record("progressing_no_status.yaml", obj)
		Expect(health(obj)).To(Equal(HealthStatus{Status: Progressing, Message: "Waiting for keysmith to issue the first key"}))
		Expect(kstatus(obj)).To(Equal(status.CurrentStatus), "kstatus treats a custom resource without conditions as Current")
		out, code := waitReady(ns, "fresh", "2s")
		Expect(code).NotTo(BeZero())
		Expect(out).To(ContainSubstring("timed out waiting for the condition"))

		gate.unblock(ns, "secrets")
		Eventually(healthOf(ns, "fresh")).WithTimeout(30 * time.Second).Should(HaveField("Status", Healthy))
		Expect(kstatusOf(ns, "fresh")()).To(Equal(status.CurrentStatus))
	})

	It("Ready: Healthy with the Ready message, kstatus Current, kubectl wait succeeds", func() {
		ns := namespace("gitops-ready", nil)
		apiKey(ns, "billing-api", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"users:read", "organizations:read"} })
		out, code := waitReady(ns, "billing-api", "30s")
		Expect(code).To(BeZero(), out)
		Expect(out).To(Equal("apikey.keysmith.dev/billing-api condition met"))
		obj := getObject(ctx, k8s, ns, "billing-api")
		record("healthy_ready.yaml", obj)
		ak := typed(ns, "billing-api")
		Expect(health(obj)).To(Equal(HealthStatus{Status: Healthy, Message: "Key " + ak.Status.CurrentKeyID + " is active; next rotation at " +
			ak.Status.NextRotationAt.UTC().Format(time.RFC3339)}))
		Expect(rt.ResourceHealth(obj, scripts.Health)).To(Equal(health(obj)))
		Expect(kstatus(obj)).To(Equal(status.CurrentStatus))
		Expect(disabledActions(obj)).To(ConsistOf("enable"))
	})

	It("a spec change keysmith has not observed yet: Progressing and InProgress until it has, then Healthy and Current, never Degraded", func() {
		ns := namespace("gitops-generation", nil)
		apiKey(ns, "billing-api", nil)
		readyKey(ns, "billing-api")
		Expect(getObject(ctx, k8s, ns, "billing-api")["metadata"].(map[string]any)["generation"]).To(BeEquivalentTo(1))

		gate.block(ns, "apikeys/status")
		mergePatch(ns, "billing-api", `{"spec":{"scopes":["users:read","audit:read"]}}`)
		Eventually(func() int { return gate.refusals(ns, "apikeys/status") }).WithTimeout(10 * time.Second).Should(BeNumerically(">", 0))
		obj := getObject(ctx, k8s, ns, "billing-api")
		record("progressing_generation_not_observed.yaml", obj)
		Expect(health(obj)).To(Equal(HealthStatus{Status: Progressing,
			Message: "Waiting for keysmith to act on generation 2 (status describes generation 1)"}))
		Expect(kstatus(obj)).To(Equal(status.InProgressStatus))

		By("watching health while keysmith catches up: Progressing, then Healthy, nothing else")
		seen := []string{}
		gate.unblock(ns, "apikeys/status")
		Eventually(func() string {
			hs := healthOf(ns, "billing-api")()
			if len(seen) == 0 || seen[len(seen)-1] != hs.Status {
				seen = append(seen, hs.Status)
			}
			return hs.Status
		}).WithTimeout(30 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(Healthy))
		Expect(seen).To(Equal([]string{Progressing, Healthy}))
		Consistently(healthOf(ns, "billing-api")).WithTimeout(time.Second).Should(HaveField("Status", Healthy))
		Expect(kstatusOf(ns, "billing-api")()).To(Equal(status.CurrentStatus))
		Expect(typed(ns, "billing-api").Status.ObservedGeneration).To(BeEquivalentTo(2))
	})

	It("actions on a live ApiKey: rotate rotates, revoke revokes the current key, each sending only its annotation", func() {
		ns := namespace("gitops-actions", nil)
		apiKey(ns, "billing-api", nil)
		first := readyKey(ns, "billing-api").Status.CurrentKeyID

		patch := runAction(ns, "billing-api", "rotate")
		Expect(patch).To(MatchRegexp(`^\{"metadata":\{"annotations":\{"keysmith.dev/rotate":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}\}\}$`))
		Eventually(func() string { return typed(ns, "billing-api").Status.CurrentKeyID }).WithTimeout(20 * time.Second).ShouldNot(Equal(first))
		ak := typed(ns, "billing-api")
		Expect(keyState(ak, first)).To(Equal(string(v1alpha1.KeyRetiring)), "the previous key stays valid for the overlap")
		second := ak.Status.CurrentKeyID

		By("a second rotation in the same second still rotates")
		runAction(ns, "billing-api", "rotate")
		Eventually(func() string { return typed(ns, "billing-api").Status.CurrentKeyID }).WithTimeout(20 * time.Second).ShouldNot(Equal(second))
		third := typed(ns, "billing-api").Status.CurrentKeyID
		Eventually(healthOf(ns, "billing-api")).WithTimeout(20 * time.Second).Should(HaveField("Status", Healthy))

		patch = runAction(ns, "billing-api", "revoke")
		Expect(patch).To(Equal(`{"metadata":{"annotations":{"keysmith.dev/revoke":"` + third + `"}}}`))
		Eventually(func() []string {
			state, reason := keyState(typed(ns, "billing-api"), third)
			return []string{state, reason}
		}).WithTimeout(20 * time.Second).Should(Equal([]string{string(v1alpha1.KeyRevoked), v1alpha1.RevokedManual}))
		Eventually(healthOf(ns, "billing-api")).WithTimeout(20 * time.Second).Should(HaveField("Status", Healthy))
		fourth := typed(ns, "billing-api").Status.CurrentKeyID
		Expect(fourth).NotTo(BeElementOf(first, second, third), "a fresh key replaces the revoked one")
		Expect(secretKeyLength(ns, "billing-api-key")).To(BeNumerically(">", 0))

		By("revoking again adds the new current key to the annotation")
		patch = runAction(ns, "billing-api", "revoke")
		Expect(patch).To(Equal(`{"metadata":{"annotations":{"keysmith.dev/revoke":"` + third + "," + fourth + `"}}}`))
		Eventually(func() string { s, _ := keyState(typed(ns, "billing-api"), fourth); return s }).
			WithTimeout(20 * time.Second).Should(Equal(string(v1alpha1.KeyRevoked)))
		Expect(keyState(typed(ns, "billing-api"), second)).To(Equal(string(v1alpha1.KeyRetiring)), "revoke takes only the named keys")
	})

	It("disable and enable: Suspended while disabled (kstatus InProgress), a fresh key being issued is Reconciling, then Healthy", func() {
		ns := namespace("gitops-disable", nil)
		apiKey(ns, "billing-api", nil)
		before := readyKey(ns, "billing-api").Status.CurrentKeyID

		Expect(runAction(ns, "billing-api", "disable")).To(Equal(`{"spec":{"disabled":true}}`))
		Expect(health(getObject(ctx, k8s, ns, "billing-api"))).To(HaveField("Status", Suspended), "Suspended as soon as the spec says so")
		Eventually(func() string { s, _ := keyState(typed(ns, "billing-api"), before); return s }).
			WithTimeout(20 * time.Second).Should(Equal(string(v1alpha1.KeyRevoked)))
		Eventually(func() int { return secretKeyLength(ns, "billing-api-key") }).WithTimeout(20 * time.Second).Should(BeZero())
		Eventually(healthOf(ns, "billing-api")).WithTimeout(20 * time.Second).Should(Equal(HealthStatus{Status: Suspended,
			Message: "spec.disabled is true: every key is revoked and the Secret's api-key is empty. Set it to false to issue a fresh key."}))
		obj := getObject(ctx, k8s, ns, "billing-api")
		record("suspended_disabled.yaml", obj)
		Expect(kstatus(obj)).To(Equal(status.InProgressStatus), "kstatus reads Ready=False without Stalled as in progress")
		Expect(disabledActions(obj)).To(ConsistOf("rotate", "revoke", "disable"))
		out, code := waitReady(ns, "billing-api", "1s")
		Expect(code).NotTo(BeZero(), out)

		By("enabling while the Secret cannot be written yet: keysmith records the new key as Reconciling")
		gate.block(ns, "secrets")
		Expect(runAction(ns, "billing-api", "enable")).To(Equal(`{"spec":{"disabled":false}}`))
		Eventually(healthOf(ns, "billing-api")).WithTimeout(20 * time.Second).Should(Equal(HealthStatus{Status: Progressing, Message: "Issuing the first key"}))
		obj = getObject(ctx, k8s, ns, "billing-api")
		record("progressing_issuing.yaml", obj)
		Expect(kstatus(obj)).To(Equal(status.InProgressStatus))
		gate.unblock(ns, "secrets")
		Eventually(healthOf(ns, "billing-api")).WithTimeout(30 * time.Second).Should(HaveField("Status", Healthy))
		Expect(kstatusOf(ns, "billing-api")()).To(Equal(status.CurrentStatus))
		Expect(typed(ns, "billing-api").Status.CurrentKeyID).NotTo(Equal(before))
		Expect(secretKeyLength(ns, "billing-api-key")).To(BeNumerically(">", 0))
	})

	It("Stalled on a foreign Secret: Degraded with keysmith's message, kstatus Failed, kubectl wait times out", func() {
		ns := namespace("gitops-conflict", nil)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-api-key"},
			StringData: map[string]string{"token": "not keysmith's"}})).To(Succeed())
		apiKey(ns, "billing-api", nil)
		msg := `Secret "billing-api-key" exists and was not created by keysmith for this ApiKey; keysmith never adopts or overwrites it. Delete it or choose another spec.secretName.`
		Eventually(healthOf(ns, "billing-api")).WithTimeout(20 * time.Second).Should(Equal(HealthStatus{Status: Degraded, Message: msg}))
		obj := getObject(ctx, k8s, ns, "billing-api")
		record("degraded_secret_conflict.yaml", obj)
		Expect(kstatus(obj)).To(Equal(status.FailedStatus))
		out, code := waitReady(ns, "billing-api", "3s")
		Expect(code).NotTo(BeZero())
		Expect(out).To(Equal("error: timed out waiting for the condition on apikeys/billing-api"))
		out, code, _ = kubectl.run("wait", "--for=condition=Stalled", "apikey/billing-api", "-n", ns, "--timeout=10s")
		Expect(code).To(BeZero(), out)
	})

	It("a policy violation: Degraded with the broken rules, kstatus Failed", func() {
		ns := namespace("gitops-policy", map[string]string{"gitops-test": "policy"})
		p := &v1alpha1.ApiKeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: "gitops-readonly"}, Spec: v1alpha1.ApiKeyPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"gitops-test": "policy"}},
			AllowedScopes:     []v1alpha1.ScopePattern{"*:read"}}}
		Expect(k8s.Create(ctx, p)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, p))).To(Succeed()) })
		apiKey(ns, "admin-api", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"users:read", "roles:manage"} })
		Eventually(healthOf(ns, "admin-api")).WithTimeout(20 * time.Second).Should(HaveField("Status", Degraded))
		obj := getObject(ctx, k8s, ns, "admin-api")
		record("degraded_policy_violation.yaml", obj)
		Expect(health(obj).Message).To(ContainSubstring("ApiKeyPolicy gitops-readonly: scope roles:manage is not allowed"))
		Expect(kstatus(obj)).To(Equal(status.FailedStatus))
	})

	It("ExpiringSoon: Healthy with the warning as message, kstatus Current", func() {
		ns := namespace("gitops-expiring", nil)
		apiKey(ns, "ci-token", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = nil
			ak.Spec.ExpiresAfter = &metav1.Duration{Duration: time.Hour} // within the 14-day warning at once
		})
		ak := readyKey(ns, "ci-token")
		// keysmith raises ExpiringSoon on the reconcile after the one that issued the key, and nothing wakes
		// it before notAfter for a key issued inside its warning (see the pending spec below): a label
		// change makes it look again.
		mergePatch(ns, "ci-token", `{"metadata":{"labels":{"gitops-test":"wake"}}}`)
		Eventually(healthOf(ns, "ci-token")).WithTimeout(10 * time.Second).Should(HaveField("Message", HavePrefix("Key "+ak.Status.CurrentKeyID+" expires at ")))
		obj := getObject(ctx, k8s, ns, "ci-token")
		record("healthy_expiring_soon.yaml", obj)
		Expect(health(obj).Message).To(HaveSuffix("and no rotation will replace it before; annotate keysmith.dev/rotate or configure rotation"))
		Expect(kstatus(obj)).To(Equal(status.CurrentStatus))
		out, code := waitReady(ns, "ci-token", "10s")
		Expect(code).To(BeZero(), out)
	})

	It("a Secret the API server refuses (a ValidatingAdmissionPolicy): Degraded with the refusal, kstatus Failed", func() {
		ns := namespace("gitops-refused", map[string]string{"gitops-test": "frozen"})
		fail := admissionregistrationv1.Fail
		vap := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "gitops-frozen-secrets"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{FailurePolicy: &fail,
				MatchConstraints: &admissionregistrationv1.MatchResources{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"gitops-test": "frozen"}},
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}}}}}},
				Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "secrets are frozen in this namespace"}}}}
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "gitops-frozen-secrets"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: vap.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}}
		Expect(k8s.Create(ctx, vap)).To(Succeed())
		Expect(k8s.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, binding))).To(Succeed())
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, vap))).To(Succeed())
		})
		Eventually(func() error {
			return k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}, client.DryRunAll)
		}).WithTimeout(20*time.Second).Should(HaveOccurred(), "the policy is in effect")

		apiKey(ns, "billing-api", nil)
		Eventually(healthOf(ns, "billing-api")).WithTimeout(20 * time.Second).Should(HaveField("Status", Degraded))
		obj := getObject(ctx, k8s, ns, "billing-api")
		record("degraded_secret_write_failed.yaml", obj)
		// keysmith names the refusal by its status reason only, never the API server's message (which may
		// quote what was sent).
		Expect(health(obj).Message).To(Equal(`The API server refused Secret "billing-api-key" (writing Secret ` + ns +
			`/billing-api-key: Invalid); no further key is issued until it accepts it. Check admission policies, quotas and secretTemplate.`))
		Expect(kstatus(obj)).To(Equal(status.FailedStatus))
	})

	// A key issued for less than the expiry warning (expiresAfter 1h, no rotation) is expiring soon from
	// the moment it is issued: nothing else has to make keysmith look.
	It("ExpiringSoon is raised for a key issued inside its expiry warning without any other event", func() {
		ns := namespace("gitops-expiring-alone", nil)
		apiKey(ns, "ci-token", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = nil
			ak.Spec.ExpiresAfter = &metav1.Duration{Duration: time.Hour}
		})
		ak := readyKey(ns, "ci-token")
		Eventually(healthOf(ns, "ci-token")).WithTimeout(10 * time.Second).Should(HaveField("Message", HavePrefix("Key "+ak.Status.CurrentKeyID+" expires at ")))
	})

	It("deleting while another finalizer holds the ApiKey: Progressing (Argo CD: Pending deletion), kstatus Terminating", func() {
		ns := namespace("gitops-deleting", nil)
		apiKey(ns, "old-api", func(ak *v1alpha1.ApiKey) { ak.Finalizers = []string{"gitops.keysmith.dev/hold"} })
		readyKey(ns, "old-api")
		Expect(k8s.Delete(ctx, typed(ns, "old-api"))).To(Succeed())
		Eventually(func() []string { return typed(ns, "old-api").Finalizers }).WithTimeout(20 * time.Second).Should(Equal([]string{"gitops.keysmith.dev/hold"}))
		obj := getObject(ctx, k8s, ns, "old-api")
		record("progressing_deleting.yaml", obj)
		Expect(health(obj)).To(Equal(HealthStatus{Status: Progressing, Message: "The ApiKey is being deleted; its keys are revoked"}))
		Expect(rt.ResourceHealth(obj, scripts.Health)).To(Equal(HealthStatus{Status: Progressing, Message: "Pending deletion"}))
		Expect(kstatus(obj)).To(Equal(status.TerminatingStatus))
		Expect(disabledActions(obj)).To(ConsistOf("rotate", "revoke", "disable", "enable"))
		for _, k := range typed(ns, "old-api").Status.Keys {
			Expect(k.State).To(Equal(v1alpha1.KeyRevoked))
		}

		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(apiKeyGVK)
		u.SetNamespace(ns)
		u.SetName("old-api")
		Expect(k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "old-api"}, &v1alpha1.ApiKey{}))
		}).WithTimeout(10 * time.Second).Should(BeTrue())
	})

	It("Expired (the clock passes the key's lifetime): Degraded, kstatus Failed; the rotate action issues a fresh key", func() {
		ns := namespace("gitops-expired", nil)
		apiKey(ns, "ci-token", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = nil
			ak.Spec.ExpiresAfter = &metav1.Duration{Duration: time.Hour}
		})
		expired := readyKey(ns, "ci-token").Status.CurrentKeyID
		clock.advance(2 * time.Hour)
		// keysmith wakes at notAfter on its own; a label change makes it look now, on the moved clock.
		mergePatch(ns, "ci-token", `{"metadata":{"labels":{"gitops-test":"wake"}}}`)
		Eventually(healthOf(ns, "ci-token")).WithTimeout(20 * time.Second).Should(Equal(HealthStatus{Status: Degraded,
			Message: "The current key has expired and rotation is not configured. Annotate the ApiKey with keysmith.dev/rotate=<any new value> to issue a fresh key."}))
		obj := getObject(ctx, k8s, ns, "ci-token")
		record("degraded_expired.yaml", obj)
		Expect(kstatus(obj)).To(Equal(status.FailedStatus))
		Expect(disabledActions(obj)).To(ConsistOf("revoke", "enable"), "an expired key cannot be revoked; rotate is the way out")

		runAction(ns, "ci-token", "rotate")
		Eventually(healthOf(ns, "ci-token")).WithTimeout(20 * time.Second).Should(HaveField("Status", Healthy))
		Expect(typed(ns, "ci-token").Status.CurrentKeyID).NotTo(Equal(expired))
		Expect(kstatusOf(ns, "ci-token")()).To(Equal(status.CurrentStatus))
	})

	It("Unused (revoked after revokeUnusedAfter without use): Degraded, kstatus Failed; the rotate action issues a fresh key", func() {
		ns := namespace("gitops-unused", nil)
		apiKey(ns, "idle-api", func(ak *v1alpha1.ApiKey) { ak.Spec.RevokeUnusedAfter = &metav1.Duration{Duration: time.Hour} })
		idle := readyKey(ns, "idle-api").Status.CurrentKeyID
		clock.advance(2 * time.Hour)
		mergePatch(ns, "idle-api", `{"metadata":{"labels":{"gitops-test":"wake"}}}`)
		Eventually(healthOf(ns, "idle-api")).WithTimeout(20 * time.Second).Should(Equal(HealthStatus{Status: Degraded,
			Message: "The current key was revoked because it was not used for revokeUnusedAfter. Annotate the ApiKey with keysmith.dev/rotate=<any new value> to issue a fresh key."}))
		obj := getObject(ctx, k8s, ns, "idle-api")
		record("degraded_unused.yaml", obj)
		Expect(kstatus(obj)).To(Equal(status.FailedStatus))
		state, reason := keyState(typed(ns, "idle-api"), idle)
		Expect([]string{state, reason}).To(Equal([]string{string(v1alpha1.KeyRevoked), v1alpha1.RevokedUnused}))

		runAction(ns, "idle-api", "rotate")
		Eventually(healthOf(ns, "idle-api")).WithTimeout(20 * time.Second).Should(HaveField("Status", Healthy))
		Expect(typed(ns, "idle-api").Status.CurrentKeyID).NotTo(Equal(idle))
	})
})
