package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

const (
	eventually = 20 * time.Second
	poll       = 20 * time.Millisecond
)

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "verify-"}}
	Expect(k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

func get(ns, name string) *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
	return ak
}

// issue creates an ApiKey and returns it once Ready, with the key from its Secret.
func issue(ns, name string, mutate ...func(*v1alpha1.ApiKey)) (*v1alpha1.ApiKey, string) {
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "roles:manage"}, SecretName: name + "-key"},
	}
	for _, m := range mutate {
		m(ak)
	}
	Expect(k8s.Create(context.Background(), ak)).To(Succeed())
	return waitKey(ns, name, "")
}

// waitKey waits until the ApiKey is Ready with a current key other than notID, in the Secret.
func waitKey(ns, name, notID string) (*v1alpha1.ApiKey, string) {
	var ak *v1alpha1.ApiKey
	var key string
	Eventually(func(g Gomega) {
		ak = get(ns, name)
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		g.Expect(ak.Status.CurrentKeyID).NotTo(Equal(notID))
		s := &corev1.Secret{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: ak.Spec.SecretName}, s)).To(Succeed())
		key = string(s.Data[v1alpha1.SecretKeyAPIKey])
		g.Expect(keys.ID(key) == ak.Status.CurrentKeyID).To(BeTrue(), "Secret holds the current key")
	}, eventually, poll).Should(Succeed())
	return ak, key
}

// check calls POST /v1/verify and returns the HTTP status and the decoded answer.
func check(key string, scopes ...string) (int, verify.VerifyResponse) {
	b, _ := json.Marshal(verify.VerifyRequest{Key: key, Scopes: scopes})
	resp, err := http.Post(base+"/v1/verify", "application/json", bytes.NewReader(b))
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var out verify.VerifyResponse
	if resp.StatusCode == http.StatusOK {
		Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	}
	return resp.StatusCode, out
}

func code(key string, scopes ...string) verify.Code {
	_, r := check(key, scopes...)
	return r.Code
}

// authz calls the proxy contract and returns the status.
func authz(key, scopes string) *http.Response {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/authz/orders?scopes=%s", base, scopes), nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp
}

func annotate(ns, name, k, v string) {
	ak := get(ns, name)
	patch := client.MergeFrom(ak.DeepCopy())
	if ak.Annotations == nil {
		ak.Annotations = map[string]string{}
	}
	ak.Annotations[k] = v
	Expect(k8s.Patch(context.Background(), ak, patch)).To(Succeed())
}

func keyByID(ak *v1alpha1.ApiKey, id string) v1alpha1.IssuedKey {
	for _, k := range ak.Status.Keys {
		if k.ID == id {
			return k
		}
	}
	Fail("key " + id + " not listed")
	return v1alpha1.IssuedKey{}
}
