package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/inventory"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

const (
	ns      = "payments"
	otherNS = "shop"
)

func get(namespace, name string) *v1alpha1.ApiKey {
	GinkgoHelper()
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, ak)).To(Succeed())
	return ak
}

// secretKey is the key in an ApiKey's Secret, read as the administrator ("" when emptied).
func secretKey(namespace, secretName string) string {
	GinkgoHelper()
	s := &corev1.Secret{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: secretName}, s)).To(Succeed())
	return string(s.Data[v1alpha1.SecretKeyAPIKey])
}

// currentKey waits until billing-api's Secret holds its current key (keysmith records a rotated key in
// status before it writes it to the Secret) and returns it.
func currentKey() string {
	GinkgoHelper()
	var key string
	Eventually(func() bool {
		key = secretKey(ns, "billing-api-key")
		return key != "" && keys.ID(key) == get(ns, "billing-api").Status.CurrentKeyID
	}, eventually, poll).Should(BeTrue(), "the Secret holds the current key")
	return key
}

func verdict(key string) testenv.Verdict {
	return testenv.VerifyKey(http.DefaultClient, "http://"+mgr.Verifier.HTTPAddr(), key)
}

func ready(namespace, name string) func(Gomega) {
	return func(g Gomega) {
		ak := &v1alpha1.ApiKey{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, ak)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		g.Expect(ak.Status.ObservedGeneration).To(Equal(ak.Generation))
	}
}

func stalled(namespace, name, reason string) func(Gomega) {
	return func(g Gomega) {
		ak := &v1alpha1.ApiKey{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, ak)).To(Succeed())
		c := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionStalled)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason))
	}
}

func create(ak *v1alpha1.ApiKey) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, ak)).To(Succeed())
}

func apiKey(namespace, name string, spec v1alpha1.ApiKeySpec) *v1alpha1.ApiKey {
	if spec.SecretName == "" {
		spec.SecretName = name + "-key"
	}
	return &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: spec}
}

var _ = Describe("kubectl apikey", Ordered, ContinueOnFailure, func() {
	BeforeAll(func() {
		for _, n := range []string{ns, otherNS} {
			Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"team": n}}})).To(Succeed())
		}
		bindInNamespace(ns, "alice", "keysmith-apikey-editor", "keysmith-apikey-viewer")
		bindClusterWide("carol", "keysmith-apikey-viewer")

		// A policy for payments: read scopes only.
		Expect(k8s.Create(ctx, &v1alpha1.ApiKeyPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "payments-read-only"},
			Spec: v1alpha1.ApiKeyPolicySpec{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": ns}},
				AllowedScopes:     []v1alpha1.ScopePattern{"*:read"},
			},
		})).To(Succeed())
		// A Secret keysmith did not create, in the way of an ApiKey.
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-key"},
			StringData: map[string]string{"token": "hand-made"}})).To(Succeed())

		billing := apiKey(ns, "billing-api", v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "organizations:read"},
			Rotation: &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}}})
		billing.Labels = map[string]string{"app": "billing"}
		create(billing)
		create(apiKey(ns, "ci-pipeline", v1alpha1.ApiKeySpec{Scopes: []string{"audit:read"},
			ExpiresAfter: &metav1.Duration{Duration: time.Hour}}))
		create(apiKey(ns, "legacy", v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}}))
		create(apiKey(ns, "admin-tool", v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "roles:manage"}}))
		create(apiKey(otherNS, "storefront", v1alpha1.ApiKeySpec{Scopes: []string{"orders:write", "orders:read"},
			Rotation: &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 168 * time.Hour}, Overlap: &metav1.Duration{Duration: time.Hour}}}))

		Eventually(ready(ns, "billing-api"), eventually, poll).Should(Succeed())
		Eventually(ready(ns, "ci-pipeline"), eventually, poll).Should(Succeed())
		Eventually(ready(otherNS, "storefront"), eventually, poll).Should(Succeed())
		Eventually(stalled(ns, "legacy", v1alpha1.ReasonSecretConflict), eventually, poll).Should(Succeed())
		Eventually(stalled(ns, "admin-tool", v1alpha1.ReasonPolicyViolation), eventually, poll).Should(Succeed())

		// billing-api is used: the verifier accepts its key and reports the use.
		ak := get(ns, "billing-api")
		key := secretKey(ns, "billing-api-key")
		Expect(verdict(key)).To(Equal(testenv.Accepted))
		Eventually(func() *metav1.Time { return get(ns, "billing-api").Status.LastUsedAt }, eventually, poll).ShouldNot(BeNil())
		Expect(ak.Status.CurrentKeyID).To(Equal(keys.ID(key)))
	})

	Describe("list", func() {
		It("shows the namespace's ApiKeys with their keys, expiries, last use and warnings", func() {
			r := apikey("alice", "list", "-n", ns)
			record("list (as alice, editor in payments)", r)
			lines := strings.Split(strings.TrimSpace(r.out), "\n")
			Expect(lines).To(HaveLen(5), r.out)
			Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "READY", "SCOPES", "KEY", "NEXT", "ROTATION", "EXPIRES", "LAST", "USED", "WARNINGS"}))
			row := func(name string) string {
				for _, l := range lines {
					if strings.HasPrefix(l, name+" ") {
						return l
					}
				}
				Fail("no row for " + name + " in\n" + r.out)
				return ""
			}
			billing := get(ns, "billing-api")
			Expect(row("billing-api")).To(MatchRegexp(`^billing-api\s+True\s+users:read,organizations:read\s+%s\s+in 29d\s+\S+Z \(in 89d\)\s+(\d+s ago|now)\s*$`, billing.Status.CurrentKeyID))
			Expect(row("ci-pipeline")).To(MatchRegexp(`^ci-pipeline\s+True\s+audit:read\s+[0-9a-f]{12}\s+<none>\s+\S+Z \(in 59m\)\s+never\s+expires in 59m$`))
			Expect(row("legacy")).To(MatchRegexp(`^legacy\s+False\s+users:read\s+<none>\s+<none>\s+<none>\s+never\s+stalled: SecretConflict$`))
			Expect(row("admin-tool")).To(MatchRegexp(`^admin-tool\s+False\s+users:read,roles:manage\s+<none>\s+<none>\s+<none>\s+never\s+policy violation$`))
			Expect(r.out).NotTo(ContainSubstring("storefront"))
		})

		It("-o wide adds the Ready reason, the Secret, the valid keys and the policies", func() {
			r := apikey("alice", "list", "-n", ns, "-o", "wide")
			record("list -o wide", r)
			Expect(r.out).To(MatchRegexp(`REASON\s+SECRET\s+VALID KEYS\s+POLICIES`))
			Expect(r.out).To(MatchRegexp(`billing-api .* KeyActive\s+billing-api-key\s+1\s+payments-read-only`))
			Expect(r.out).To(MatchRegexp(`legacy .* SecretConflict\s+legacy-key\s+0\s+<none>`))
		})

		It("-o json and -o yaml print the rows with every field", func() {
			r := apikey("alice", "list", "-n", ns, "-o", "json")
			var list struct{ Items []inventory.Row }
			Expect(json.Unmarshal([]byte(r.out), &list)).To(Succeed())
			Expect(list.Items).To(HaveLen(4))
			byName := map[string]inventory.Row{}
			for _, row := range list.Items {
				byName[row.Name] = row
			}
			Expect(byName["ci-pipeline"].Warnings).To(ContainElement(HaveField("Kind", inventory.WarnExpiring)))
			Expect(byName["admin-tool"].Warnings[0].Message).To(ContainSubstring("scope roles:manage is not allowed"))
			Expect(byName["billing-api"].LastUsedAt).NotTo(BeNil())
			Expect(byName["billing-api"].Warnings).To(BeEmpty())

			y := apikey("alice", "list", "-n", ns, "-o", "yaml")
			var fromYAML struct{ Items []inventory.Row }
			Expect(yaml.Unmarshal([]byte(y.out), &fromYAML)).To(Succeed())
			Expect(fromYAML.Items).To(HaveLen(4))
			one := apikey("alice", "list", "-n", ns, "-l", "app=billing", "-o", "json")
			record("list -l app=billing -o json", one)
			Expect(json.Unmarshal([]byte(one.out), &list)).To(Succeed())
			Expect(list.Items).To(HaveLen(1))
			Expect(list.Items[0].Name).To(Equal("billing-api"))
		})

		It("-A lists every namespace for a user with cluster-wide list rights, and is Forbidden for one without", func() {
			r := apikey("carol", "list", "-A")
			record("list -A (as carol, viewer in every namespace)", r)
			Expect(strings.Fields(strings.Split(r.out, "\n")[0])[0]).To(Equal("NAMESPACE"))
			Expect(r.out).To(MatchRegexp(`(?m)^shop\s+storefront\s+True\s+orders:write,orders:read`))
			Expect(r.out).To(MatchRegexp(`(?m)^payments\s+billing-api\s+True`))

			f := apikeyFails(1, "alice", "list", "-A")
			record("list -A (as alice: no cluster-wide rights)", f)
			Expect(f.out).To(BeEmpty())
			Expect(f.err).To(Equal(`Error from server (Forbidden): apikeys.keysmith.dev is forbidden: User "alice" cannot list resource "apikeys" in API group "keysmith.dev" at the cluster scope` + "\n"))
		})

		It("is Forbidden, as kubectl says it, in a namespace the user has no rights in", func() {
			f := apikeyFails(1, "bob", "list", "-n", ns)
			record("list (as bob: no rights)", f)
			Expect(f.err).To(Equal(`Error from server (Forbidden): apikeys.keysmith.dev is forbidden: User "bob" cannot list resource "apikeys" in API group "keysmith.dev" in the namespace "payments"` + "\n"))
			// kubectl's own message, for comparison.
			k := run("bob", "get", "apikeys", "-n", ns)
			Expect(k.code).To(Equal(1))
			Expect(k.err).To(ContainSubstring(strings.TrimSpace(f.err)))

			e := apikey("carol", "list", "-n", "default")
			Expect(e.err).To(Equal("No ApiKeys found in default namespace.\n"))
		})
	})

	Describe("describe", func() {
		It("shows the timeline, the conditions, the Secret it may not read, and the policies from status", func() {
			r := apikey("alice", "describe", "billing-api", "-n", ns)
			record("describe (as alice)", r)
			cur := get(ns, "billing-api").Status.CurrentKeyID
			Expect(r.out).To(MatchRegexp(`(?m)^Name:\s+billing-api$`))
			Expect(r.out).To(MatchRegexp(`(?m)^Ready:\s+True \(KeyActive\): Key %s is active`, cur))
			Expect(r.out).To(MatchRegexp(`(?m)^Current key:\s+%s, expires \S+ \(in 89d\)$`, cur))
			Expect(r.out).To(MatchRegexp(`(?m)^Settings:\s+lifetime 2160h0m0s, rotation every 720h0m0s with 24h0m0s overlap, unused after 720h0m0s \(warning only\), expiry warning 336h0m0s$`))
			Expect(r.out).To(MatchRegexp(`(?m)^Timeline:\n  \S+\s+\d+s ago\s+Issued\s+key %s issued\n  \S+\s+\d+s ago\s+LastUsed\s+key %[1]s last used\n  \S+\s+in 29d\s+RotationScheduled\s+next scheduled rotation\n  \S+\s+in 89d\s+Expires\s+key %[1]s expires\n`, cur))
			Expect(r.out).To(MatchRegexp(`(?m)^  Ready\s+True\s+KeyActive\s+`))
			Expect(r.out).To(ContainSubstring("Secret: billing-api-key\n  cannot read it: secrets \"billing-api-key\" is forbidden: User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"payments\"\n"))
			Expect(r.out).To(ContainSubstring("Policies:\n  payments-read-only (from status.effective: cannot read policies: apikeypolicies.keysmith.dev is forbidden: User \"alice\" cannot list resource \"apikeypolicies\""))
			Expect(r.out).To(ContainSubstring("Events:\n  cannot list them: events is forbidden"))
		})

		It("shows the Secret's data keys and lengths, never a value, the policies evaluated and the events, to a user who may read them", func() {
			r := apikey("admin", "describe", "billing-api", "-n", ns)
			record("describe (as a namespace admin who may read Secrets, policies and events)", r)
			Expect(r.out).To(ContainSubstring("Secret: billing-api-key\n  Type: keysmith.dev/api-key, managed by keysmith, controlled by ApiKey billing-api\n  Data (lengths only):\n    api-key: 44 bytes\n    expires-at: 20 bytes\n    key-id: 12 bytes\n"))
			Expect(r.out).To(ContainSubstring("Policies:\n  payments-read-only\n"))
			Expect(r.out).To(MatchRegexp(`(?m)^  Normal\s+KeyIssued\s+\S+\s+1\s+`))

			v := apikey("admin", "describe", "admin-tool", "-n", ns)
			record("describe an ApiKey that breaks a policy", v)
			Expect(v.out).To(ContainSubstring("  violation: ApiKeyPolicy payments-read-only: scope roles:manage is not allowed (allowed: *:read)"))
			Expect(v.out).To(MatchRegexp(`(?m)^  policy violation: The ApiKey breaks 1 policy rule\(s\); no key is issued or rotated \(enforcement Block\): ApiKeyPolicy payments-read-only: scope roles:manage is not allowed`))
			Expect(v.out).To(ContainSubstring("Keys:\n  <none>"))
		})

		It("-o json prints the row, keys, timeline, Secret summary and policies", func() {
			r := apikey("admin", "describe", "billing-api", "-n", ns, "-o", "json")
			var d struct {
				Row      inventory.Row
				Timeline []inventory.Event
				Secret   inventory.SecretInfo
				Policies struct{ Applied []string }
			}
			Expect(json.Unmarshal([]byte(r.out), &d)).To(Succeed())
			Expect(d.Secret.Data).To(ContainElement(inventory.DataEntry{Key: "api-key", Length: 44}))
			Expect(d.Timeline[0].Kind).To(Equal(inventory.EventIssued))
			Expect(d.Policies.Applied).To(Equal([]string{"payments-read-only"}))
		})

		It("refuses a name that is not one, without repeating it, and says NotFound as kubectl does", func() {
			f := apikeyFails(1, "alice", "describe", "Not_A_Name", "-n", ns)
			Expect(f.err).To(Equal("error: an ApiKey name is a DNS subdomain of at most 63 characters (lowercase letters, digits, '-' and '.')\n"))
			// A key typed where a command or a flag value goes is not echoed by the error (run checks every output).
			k, err := keys.Generate("ks", "live")
			Expect(err).NotTo(HaveOccurred())
			u := apikeyFails(2, "alice", k.Plaintext())
			Expect(u.err).To(Equal(`error: unknown command "<redacted>" for "kubectl apikey"` + "\n"))
			u = apikeyFails(2, "alice", "rotate", "billing-api", "--timeout", k.Plaintext())
			Expect(u.err).To(ContainSubstring(`invalid argument "<redacted>" for "--timeout" flag`))
			g := apikeyFails(1, "alice", "describe", "nothing", "-n", ns)
			Expect(g.err).To(Equal(`Error from server (NotFound): apikeys.keysmith.dev "nothing" not found` + "\n"))
		})
	})

	Describe("rotate, revoke, disable, enable", func() {
		It("rotate issues a new key, waits for keysmith and keeps the previous key for the overlap", func() {
			before := get(ns, "billing-api")
			oldKey := currentKey()
			r := apikey("alice", "rotate", "billing-api", "-n", ns)
			record("rotate", r)
			after := get(ns, "billing-api")
			Expect(after.Status.CurrentKeyID).NotTo(Equal(before.Status.CurrentKeyID))
			Expect(r.out).To(MatchRegexp(`^apikey.keysmith.dev/billing-api rotation requested \(keysmith.dev/rotate=\S+Z\)\n`))
			Expect(r.out).To(ContainSubstring("rotated: the new key " + after.Status.CurrentKeyID + " is current (for Secret billing-api-key)"))
			Expect(r.out).To(ContainSubstring("the previous key " + before.Status.CurrentKeyID + " is retiring, accepted until "))
			Expect(r.out).To(MatchRegexp(`\(confirmed by keysmith in [0-9.]+m?s\)\n$`))
			Expect(r.took).To(BeNumerically("<", 15*time.Second))
			Expect(verdict(oldKey)).To(Equal(testenv.Accepted), "the previous key is valid for the overlap")
			// keysmith records a rotated key in status before it writes it to the Secret.
			Eventually(func() string { return keys.ID(secretKey(ns, "billing-api-key")) }, eventually, poll).Should(Equal(after.Status.CurrentKeyID))
		})

		It("revoke --key revokes the current key, which every verifier refuses, and reports the fresh key", func() {
			before := get(ns, "billing-api")
			cur := before.Status.CurrentKeyID
			oldKey := currentKey()
			r := apikey("alice", "revoke", "billing-api", "-n", ns, "--key", cur)
			record("revoke --key", r)
			Expect(verdict(oldKey)).To(Equal(testenv.Refused))
			after := get(ns, "billing-api")
			Expect(after.Status.CurrentKeyID).NotTo(Equal(cur))
			// Two steps: the API server holds the revocation (read back: what every verifier follows; keysmith
			// may have recorded it in status before the read-back), then
			// keysmith's record.
			Expect(r.out).To(MatchRegexp(`^apikey.keysmith.dev/billing-api revocation of key %s requested \(keysmith.dev/revoke=%[1]s\)\n`+
				`apikey.keysmith.dev/billing-api every verifier refuses key %[1]s from its next request on \(the API server holds (?:keysmith.dev/revoke naming it|status listing it as no longer valid)\) \(read back from the API server (?:after [0-9.]+m?s|at once)\)\n`+
				`apikey.keysmith.dev/billing-api revoked: key %[1]s revoked \(Manual\); `, cur))
			Expect(r.err).To(BeEmpty())
			Expect(r.out).To(ContainSubstring("revoked: key " + cur + " revoked (Manual); a fresh key " + after.Status.CurrentKeyID + " is current (for Secret billing-api-key), with no overlap"))
			Expect(after.Annotations[v1alpha1.AnnotationRevoke]).To(Equal(cur))
		})

		It("revoke refuses an id the ApiKey does not list, and takes a pasted key for its id without sending or printing it", func() {
			f := apikeyFails(1, "alice", "revoke", "billing-api", "-n", ns, "--key", "0123456789ab")
			Expect(f.err).To(HavePrefix("error: refused: ApiKey payments/billing-api lists no key 0123456789ab (its keys: "))
			f = apikeyFails(1, "alice", "revoke", "billing-api", "-n", ns, "--key", "ks_live_nope")
			Expect(f.err).To(Equal("error: --key entry 1: a key id is 12 lowercase hex digits (kubectl apikey describe NAME lists them)\n"))
			f = apikeyFails(1, "alice", "revoke", "billing-api", "-n", ns)
			Expect(f.err).To(Equal("error: revoke needs --key ID (one or more), --key - or --all\n"))

			// The current key pasted whole instead of its id (run() checks that no output repeats it).
			current := currentKey()
			r := apikey("alice", "revoke", "billing-api", "-n", ns, "--key", current)
			Expect(r.err).To(Equal("Warning: --key entry 1 is a key, not a key id: revoking it by its id " + keys.ID(current) + " (the key is not sent anywhere; remove it from your shell history, and use --key - to read keys from standard input)\n"))
			shown := result{args: []string{"apikey", "revoke", "billing-api", "-n", ns, "--key", `"$LEAKED_KEY"`}, out: r.err + r.out}
			record("revoke --key with a key instead of its id", shown)
			Expect(verdict(current)).To(Equal(testenv.Refused))
			after := get(ns, "billing-api")
			Expect(after.Annotations[v1alpha1.AnnotationRevoke]).To(Equal(keys.ID(current)), "a handled value is replaced, never holds the key")
			Expect(strings.Contains(r.out, keys.ID(current)+" revoked (Manual)")).To(BeTrue(), r.out)
		})

		It("revoke --key - reads ids or keys from standard input, so that a key is on no command line", func() {
			current := currentKey()
			id := keys.ID(current)
			r := runIn("# from the leak report\n"+current+"\n", "alice", "apikey", "revoke", "billing-api", "-n", ns, "--key", "-")
			Expect(r.code).To(BeZero(), "%s", r)
			record("revoke --key - (the leaked key on standard input)", result{args: []string{"apikey", "revoke", "billing-api", "-n", ns, "--key", "-", "<", "leaked-keys.txt"}, out: r.out, err: r.err})
			Expect(r.err).To(BeEmpty())
			Expect(r.out).To(HavePrefix("apikey.keysmith.dev/billing-api revocation of key " + id + " requested (keysmith.dev/revoke=" + id + ")\n"))
			Expect(r.out).To(ContainSubstring("revoked: key " + id + " revoked (Manual); a fresh key "))
			Expect(verdict(current)).To(Equal(testenv.Refused))
			Expect(get(ns, "billing-api").Annotations[v1alpha1.AnnotationRevoke]).To(Equal(id))
		})

		It("revoke --all revokes every valid key; a second --all with nothing valid changes nothing", func() {
			before := get(ns, "billing-api")
			var valid []string
			for _, k := range before.Status.Keys {
				if k.State == v1alpha1.KeyActive || k.State == v1alpha1.KeyRetiring {
					valid = append(valid, k.ID)
				}
			}
			Expect(len(valid)).To(BeNumerically(">=", 2), "the fresh key and the one retiring since the rotation")
			r := apikey("alice", "revoke", "billing-api", "-n", ns, "--all")
			record("revoke --all", r)
			for _, id := range valid {
				Expect(r.out).To(ContainSubstring(id + " revoked (Manual)"))
			}
			Expect(r.out).To(ContainSubstring("a fresh key "))
			Expect(get(ns, "billing-api").Annotations[v1alpha1.AnnotationRevoke]).To(Equal("all"))
		})

		It("--wait=false returns once the change is accepted, and keysmith does it anyway", func() {
			before := get(ns, "billing-api")
			r := apikey("alice", "rotate", "billing-api", "-n", ns, "--wait=false")
			record("rotate --wait=false", r)
			Expect(r.out).To(HaveSuffix("apikey.keysmith.dev/billing-api not waiting for keysmith's confirmation (--wait=false)\n"))
			Eventually(func() string { return get(ns, "billing-api").Status.CurrentKeyID }, eventually, poll).ShouldNot(Equal(before.Status.CurrentKeyID))
			Eventually(ready(ns, "billing-api"), eventually, poll).Should(Succeed())

			// A revocation needs no confirmation to take effect: the verifiers read the annotation.
			key := currentKey()
			id := keys.ID(key)
			Eventually(func() string { return get(ns, "billing-api").Status.CurrentKeyID }, eventually, poll).Should(Equal(id))
			v := apikey("alice", "revoke", "billing-api", "-n", ns, "--key", id, "--wait=false")
			record("revoke --wait=false", v)
			// As fast as the verifier's watch (milliseconds; docs/security.md); the timeout is generous for a
			// loaded machine, and the time is logged.
			sent := time.Now()
			Eventually(func() testenv.Verdict { return verdict(key) }, eventually, 5*time.Millisecond).Should(Equal(testenv.Refused))
			GinkgoWriter.Printf("the verifier refused the key %s after revoke --wait=false returned\n", time.Since(sent).Round(time.Millisecond))
			Eventually(ready(ns, "billing-api"), eventually, poll).Should(Succeed())
		})

		It("disable revokes every key and empties the Secret; enable issues a fresh key", func() {
			before := get(ns, "billing-api")
			oldKey := currentKey()
			r := apikey("alice", "disable", "billing-api", "-n", ns)
			record("disable", r)
			Expect(r.out).To(MatchRegexp(`apikey.keysmith.dev/billing-api disabled: \d+ keys? revoked \(Disabled\); every verifier refuses (it|them), and keysmith empties the Secret billing-api-key`))
			Expect(r.out).To(ContainSubstring("apikey.keysmith.dev/billing-api spec.disabled set to true\napikey.keysmith.dev/billing-api every verifier refuses every key of this ApiKey from its next request on (the API server holds spec.disabled: true) (read back from the API server "))
			Expect(verdict(oldKey)).To(Equal(testenv.Refused))
			// Compared as a bool: a failure must not print the key.
			Eventually(func() bool { return secretKey(ns, "billing-api-key") == "" }, eventually, poll).Should(BeTrue(), "the Secret's key is emptied")

			l := apikey("alice", "list", "-n", ns)
			Expect(l.out).To(MatchRegexp(`(?m)^billing-api\s+False\s+.*\s+disabled$`))

			again := apikey("alice", "disable", "billing-api", "-n", ns)
			Expect(again.out).To(HavePrefix("apikey.keysmith.dev/billing-api unchanged: ApiKey payments/billing-api is already disabled (spec.disabled is true)\n"))
			f := apikeyFails(1, "alice", "rotate", "billing-api", "-n", ns)
			Expect(f.err).To(Equal("error: refused: ApiKey payments/billing-api is disabled: enable it to issue a fresh key\n"))

			e := apikey("alice", "enable", "billing-api", "-n", ns)
			record("enable", e)
			after := get(ns, "billing-api")
			for _, k := range before.Status.Keys {
				Expect(after.Status.CurrentKeyID).NotTo(Equal(k.ID))
			}
			Expect(e.out).To(ContainSubstring("enabled: a fresh key " + after.Status.CurrentKeyID + " is current (for Secret billing-api-key)"))
			Eventually(func() testenv.Verdict { return verdict(secretKey(ns, "billing-api-key")) }, eventually, poll).Should(Equal(testenv.Accepted))
		})

		It("times out with the reason when keysmith cannot act, and exits 1", func() {
			r := apikeyFails(1, "alice", "rotate", "legacy", "-n", ns, "--timeout", "2s")
			record("rotate an ApiKey keysmith cannot act on", r)
			Expect(r.err).To(HavePrefix("error: keysmith has not confirmed the rotate of ApiKey payments/legacy within 2s; Stalled (SecretConflict): "))
			Expect(r.took).To(BeNumerically("<", 10*time.Second))

			// enable on an ApiKey that is enabled asks keysmith for nothing: it says at once why it is not Ready.
			e := apikey("alice", "enable", "legacy", "-n", ns)
			record("enable an enabled ApiKey that is not Ready", e)
			Expect(e.out).To(HavePrefix("apikey.keysmith.dev/legacy unchanged: ApiKey payments/legacy is already enabled (spec.disabled is false); it is not Ready: Stalled (SecretConflict): "))
			Expect(e.took).To(BeNumerically("<", 10*time.Second))
		})

		It("is Forbidden for a user who may read but not patch, and for a user with no rights", func() {
			f := apikeyFails(1, "carol", "rotate", "billing-api", "-n", ns)
			record("rotate (as carol: viewer)", f)
			Expect(f.err).To(HavePrefix(`Error from server (Forbidden): apikeys.keysmith.dev "billing-api" is forbidden: User "carol" cannot patch resource "apikeys" in API group "keysmith.dev" in the namespace "payments"`))
			for _, args := range [][]string{
				{"revoke", "billing-api", "--all"}, {"disable", "billing-api"}, {"enable", "billing-api"}, {"rotate", "billing-api"}, {"describe", "billing-api"},
			} {
				f := apikeyFails(1, "bob", append(args, "-n", ns)...)
				Expect(f.err).To(Equal(`Error from server (Forbidden): apikeys.keysmith.dev "billing-api" is forbidden: User "bob" cannot get resource "apikeys" in API group "keysmith.dev" in the namespace "payments"`+"\n"), "%v", args)
			}
			// alice has no rights in shop.
			f = apikeyFails(1, "alice", "rotate", "storefront", "-n", otherNS)
			Expect(f.err).To(ContainSubstring(`User "alice" cannot get resource "apikeys" in API group "keysmith.dev" in the namespace "shop"`))
		})
	})

	It("describe after all that shows the whole timeline: issued, rotated, retiring until, revoked why, last used, scheduled", func() {
		Eventually(ready(ns, "billing-api"), eventually, poll).Should(Succeed())
		r := apikey("admin", "describe", "billing-api", "-n", ns)
		record("describe after rotate, revoke, disable and enable", r)
		kinds := map[string]int{}
		timeline := r.out[strings.Index(r.out, "Timeline:\n"):strings.Index(r.out, "Conditions:\n")]
		for _, m := range regexp.MustCompile(`(?m)^  \S+Z\s+(?:now|in \S+|\S+ ago)\s+(\w+)\s`).FindAllStringSubmatch(timeline, -1) {
			kinds[m[1]]++
		}
		Expect(kinds).To(HaveKey("Issued"))
		Expect(kinds).To(HaveKey("Rotated"))
		Expect(kinds).To(HaveKey("Retiring"))
		Expect(kinds).To(HaveKey("Revoked"))
		Expect(kinds).To(HaveKey("LastUsed"))
		Expect(kinds).To(HaveKey("Expires"))
		Expect(r.out).To(ContainSubstring("revoked (Manual)"))
		Expect(r.out).To(ContainSubstring("revoked (Disabled)"))
		Expect(r.out).To(MatchRegexp(`(?m)^  Normal\s+KeyRotated\s+`))
		Expect(r.out).To(MatchRegexp(`(?m)^  Warning\s+KeyRevoked\s+|^  Normal\s+KeyRevoked\s+`))
	})

	Describe("shell completion", func() {
		It("completes ApiKey names and key ids through kubectl's plugin completion (kubectl_complete-apikey)", func() {
			r := run("alice", "__complete", "apikey", "rotate", "-n", ns, "")
			Expect(r.code).To(BeZero(), "%s", r)
			record("completion", result{args: r.args, out: r.out})
			Expect(strings.Split(strings.TrimSpace(r.out), "\n")).To(Equal([]string{"admin-tool", "billing-api", "ci-pipeline", "legacy", ":4"}))
			r = run("alice", "__complete", "apikey", "describe", "-n", ns, "bi")
			Expect(strings.Split(strings.TrimSpace(r.out), "\n")).To(Equal([]string{"billing-api", ":4"}))

			cur := get(ns, "billing-api").Status.CurrentKeyID
			r = run("alice", "__complete", "apikey", "revoke", "billing-api", "-n", ns, "--key", "")
			Expect(r.out).To(ContainSubstring(cur + "\tActive\n"))
			r = run("alice", "__complete", "apikey", "")
			Expect(r.out).To(ContainSubstring("list\t"))
			Expect(r.out).To(ContainSubstring("revoke\t"))

			b := apikey("alice", "completion", "bash")
			Expect(b.out).To(ContainSubstring("__start_kubectl-apikey"))
		})
	})

	It("ships a krew manifest for four platforms under the v0.1.0 release", func() {
		b, err := os.ReadFile(filepath.Join(moduleRoot(), "dist", "krew", "apikey.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var m struct {
			APIVersion string `json:"apiVersion"`
			Kind       string
			Metadata   struct{ Name string }
			Spec       struct {
				Version, ShortDescription string
				Platforms                 []struct {
					Selector         struct{ MatchLabels map[string]string }
					URI, Sha256, Bin string
					Files            []struct{ From, To string }
				}
			}
		}
		Expect(yaml.Unmarshal(b, &m)).To(Succeed())
		Expect(m.APIVersion).To(Equal("krew.googlecontainertools.github.com/v1alpha2"))
		Expect(m.Kind).To(Equal("Plugin"))
		Expect(m.Metadata.Name).To(Equal("apikey"))
		Expect(m.Spec.Version).To(Equal("v0.1.0"))
		var platforms []string
		for _, p := range m.Spec.Platforms {
			os, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
			platforms = append(platforms, os+"/"+arch)
			Expect(p.URI).To(Equal("https://github.com/keysmith-dev/keysmith/releases/download/v0.1.0/kubectl-apikey_v0.1.0_" + os + "_" + arch + ".tar.gz"))
			Expect(p.Sha256).To(MatchRegexp(`^[0-9a-f]{64}$`))
			Expect(p.Bin).To(Equal("kubectl-apikey"))
			Expect(p.Files).To(ContainElement(HaveField("From", "kubectl_complete-apikey")))
		}
		Expect(platforms).To(ConsistOf("linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"))
	})
})
