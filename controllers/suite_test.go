package controllers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"os"
	"path/filepath"
	"sigs.k8s.io/yaml"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

// The suite runs keysmith's real manager (operator.NewManager, as `keysmith manager` does) against a real
// kube-apiserver and etcd, with a fake clock so that rotations and overlaps can be stepped through.

var (
	env     *localcluster.Cluster
	k8s     client.Client // the tests' own client, uncached
	clk     *clocktesting.FakeClock
	writes  testenv.WriteCounter // the manager's writes only
	logs    testenv.Buffer       // everything the manager logged
	stopped chan struct{}

	// Every plaintext key the tests saw in a Secret; no log, event or status may contain any of them.
	seenMu   sync.Mutex
	seenKeys = map[string]bool{}
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ApiKey controller (envtest)")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter)), zap.UseDevMode(false), zap.Level(zapcore.Level(-2))))
	var err error
	var cfg = mustStart()
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	clk = clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	mgrCfg := *cfg
	writes.Wrap(&mgrCfg)
	// The manager runs with exactly the permissions of config/rbac/role.yaml, as in a cluster.
	mgrCfg.Impersonate = rest.ImpersonationConfig{UserName: grantManagerRole()}
	restricted, err := client.New(&mgrCfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	err = restricted.List(context.Background(), &corev1.ConfigMapList{})
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "RBAC is enforced for the manager: %v", err)
	mgr, err := operator.NewManager(&mgrCfg, operator.Options{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", MaxConcurrentReconciles: 4, Clock: clk,
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	stopped = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(stopped)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() { // runs even when a spec or AfterSuite fails, so no control plane is left behind
		cancel()
		<-stopped
	})
})

var _ = AfterSuite(func() {
	scanForKeyMaterial()
})

func mustStart() *rest.Config {
	e, cfg, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	env = e
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	return cfg
}

// newNamespace creates a namespace for one spec, so that write counts and events are per spec.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "spec-"}}
	Expect(k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

func apiKey(ns, name string, mutate ...func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ApiKeySpec{
			Scopes:     []string{"users:read", "roles:manage"},
			SecretName: name + "-key",
		},
	}
	for _, m := range mutate {
		m(ak)
	}
	return ak
}

func withRotation(period, overlap time.Duration) func(*v1alpha1.ApiKey) {
	return func(ak *v1alpha1.ApiKey) {
		ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: period}, Overlap: &metav1.Duration{Duration: overlap}}
	}
}

func get(ns, name string) *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
	return ak
}

// secretKey returns the key in a Secret ("" when absent) and remembers it for the final leak scan.
// It never prints the Secret: a failing assertion must not put a key into the test output.
func secretKey(ns, name string) (key string, s *corev1.Secret, found bool) {
	s = &corev1.Secret{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		return "", nil, false
	}
	key = string(s.Data[v1alpha1.SecretKeyAPIKey])
	if key != "" {
		seenMu.Lock()
		seenKeys[key] = true
		seenMu.Unlock()
	}
	return key, s, true
}

// poke changes an unrelated annotation so that the manager reconciles now (after the fake clock moved).
func poke(ns, name string) {
	ak := get(ns, name)
	patch := client.MergeFrom(ak.DeepCopy())
	if ak.Annotations == nil {
		ak.Annotations = map[string]string{}
	}
	ak.Annotations["test.keysmith.dev/poke"] = fmt.Sprint(time.Now().UnixNano())
	Expect(k8s.Patch(context.Background(), ak, patch)).To(Succeed())
}

func annotate(ns, name, key, value string) {
	ak := get(ns, name)
	patch := client.MergeFrom(ak.DeepCopy())
	if ak.Annotations == nil {
		ak.Annotations = map[string]string{}
	}
	ak.Annotations[key] = value
	Expect(k8s.Patch(context.Background(), ak, patch)).To(Succeed())
}

// events returns the events about an object in ns, oldest first.
func events(ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func eventReasons(ns, name string) []string {
	var out []string
	for _, e := range events(ns, name) {
		out = append(out, e.Reason)
	}
	return out
}

func countReason(ns, name, reason string) int {
	n := 0
	for _, e := range events(ns, name) {
		if e.Reason == reason {
			n++
		}
	}
	return n
}

func statusJSON(ak *v1alpha1.ApiKey) string {
	b, err := json.Marshal(ak.Status)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// containsAnyKey reports whether text contains any key the tests saw, without saying which.
func containsAnyKey(text string) bool {
	seenMu.Lock()
	defer seenMu.Unlock()
	for k := range seenKeys {
		if strings.Contains(text, k) {
			return true
		}
	}
	return false
}

func createUnstructured(ctx context.Context, obj map[string]any) error {
	u := &unstructured.Unstructured{Object: obj}
	return k8s.Create(ctx, u)
}

// scanForKeyMaterial checks that no key the tests saw in a Secret appears in the manager's logs, in any
// event or in any ApiKey (status included). It runs after every spec, over everything they produced.
func scanForKeyMaterial() {
	seenMu.Lock()
	n := len(seenKeys)
	seenMu.Unlock()
	Expect(n).To(BeNumerically(">=", 10), "the scan needs keys to look for")
	Expect(len(logs.String())).To(BeNumerically(">", 0))
	Expect(containsAnyKey(logs.String())).To(BeFalse(), "a key appears in the manager's logs")
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "something shaped like a valid key appears in the manager's logs")

	ctx := context.Background()
	evs := &eventsv1.EventList{}
	Expect(k8s.List(ctx, evs)).To(Succeed())
	Expect(evs.Items).NotTo(BeEmpty())
	b, err := json.Marshal(evs)
	Expect(err).NotTo(HaveOccurred())
	Expect(containsAnyKey(string(b))).To(BeFalse(), "a key appears in an event")
	Expect(testenv.FindKeys(string(b))).To(BeZero(), "something shaped like a valid key appears in an event")

	aks := &v1alpha1.ApiKeyList{}
	Expect(k8s.List(ctx, aks)).To(Succeed())
	b, err = json.Marshal(aks)
	Expect(err).NotTo(HaveOccurred())
	Expect(containsAnyKey(string(b))).To(BeFalse(), "a key appears in an ApiKey")
	Expect(testenv.FindKeys(string(b))).To(BeZero(), "something shaped like a valid key appears in an ApiKey")
	GinkgoWriter.Printf("leak scan: %d keys searched in %d bytes of logs, %d events, %d ApiKeys: none found\n", n, len(logs.String()), len(evs.Items), len(aks.Items))
}

// grantManagerRole installs the generated ClusterRole (config/rbac/role.yaml), binds it to a user and
// returns that user's name.
func grantManagerRole() string {
	const user = "keysmith-manager-under-test"
	b, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.Unmarshal(b, role)).To(Succeed())
	ctx := context.Background()
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	})).To(Succeed())
	return user
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
