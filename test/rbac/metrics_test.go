package rbac

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// scrape is one GET /metrics: the status code and the body.
type scrape struct {
	code int
	body string
}

// get scrapes url with token (none when empty). Like the ServiceMonitor, it does not verify the
// certificate unless roots is given.
func get(url, token string, roots *x509.CertPool) scrape {
	GinkgoHelper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: roots == nil, RootCAs: roots}} //nolint:gosec // self-signed, as the ServiceMonitor
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	Expect(err).NotTo(HaveOccurred())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return scrape{code: 0, body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return scrape{code: resp.StatusCode, body: string(b)}
}

func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// run starts m until the spec ends.
func run(m *operator.Manager) {
	stop := testenv.Run(m)
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
}

// waitServing waits until url answers at all (any status).
func waitServing(url string) {
	GinkgoHelper()
	Eventually(func() int { return get(url, "", nil).code }, 30*time.Second, 100*time.Millisecond).ShouldNot(BeZero())
}

// serviceAccountToken creates the ServiceAccount ns/name and mints a token for it with the TokenRequest
// API, as the kubelet does for a Pod's projected token.
func serviceAccountToken(ns, name string) string {
	GinkgoHelper()
	ctx := context.Background()
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	Expect(tr.Status.Token).NotTo(BeEmpty())
	return tr.Status.Token
}

var _ = Describe("/metrics", Ordered, func() {
	var (
		monitoring  string
		readerToken string // a Prometheus ServiceAccount bound to keysmith-metrics-reader
		otherToken  string // a ServiceAccount with no binding
		tenant      string // a namespace with an ApiKey, whose name and key id the per-ApiKey metrics expose
	)

	BeforeAll(func() {
		ctx := context.Background()
		monitoring = newNamespace("monitoring", nil)
		readerToken = serviceAccountToken(monitoring, "prometheus")
		otherToken = serviceAccountToken(monitoring, "curious")
		// What the README tells Prometheus users to run (kubectl create clusterrolebinding ...).
		Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "keysmith-metrics-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keysmith-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: monitoring, Name: "prometheus"}},
		})).To(Succeed())
		tenant = newNamespace("tenant", nil)
		Expect(k8s.Create(ctx, &v1alpha1.ApiKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "payments-api"},
			Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "payments-api-key"},
		})).To(Succeed())
	})

	// checkSecure scrapes url as nobody, with a forged token, as an unauthorized ServiceAccount and as the
	// metrics reader, and returns the reader's body.
	checkSecure := func(url string) string {
		GinkgoHelper()
		Expect(url).To(HavePrefix("https://"))
		waitServing(url)
		By("without a token: 401")
		s := get(url, "", nil)
		Expect(s.code).To(Equal(http.StatusUnauthorized), s.body)
		Expect(s.body).NotTo(ContainSubstring("keysmith_"))
		By("with a token the API server did not issue: 500 (controller-runtime's filter answers so when the TokenReview says why it failed)")
		s = get(url, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06YWRtaW4ifQ.forged", nil)
		Expect(s.code).To(Equal(http.StatusInternalServerError), s.body)
		Expect(s.body).NotTo(ContainSubstring("keysmith_"))
		By("as a ServiceAccount not bound to keysmith-metrics-reader: 403")
		s = get(url, otherToken, nil)
		Expect(s.code).To(Equal(http.StatusForbidden), s.body)
		Expect(s.body).NotTo(ContainSubstring("keysmith_"))
		By("as the ServiceAccount bound to keysmith-metrics-reader: 200")
		reader := get(url, readerToken, nil)
		Expect(reader.code).To(Equal(http.StatusOK), reader.body)
		By("over plain HTTP: no metrics")
		s = get(strings.Replace(url, "https://", "http://", 1), "", nil)
		Expect(s.code).To(Equal(http.StatusBadRequest), s.body)
		Expect(s.body).NotTo(ContainSubstring("keysmith_"))
		return reader.body
	}

	It("of the manager answer only authenticated, authorized scrapers, over HTTPS", func() {
		addr := freeAddress()
		// The manager runs as its ServiceAccount with config/rbac's roles only: its TokenReviews and
		// SubjectAccessReviews need keysmith-metrics-auth.
		m, err := operator.NewManager(impersonatedConfig(systemNamespace, managerSA), operator.Options{
			MetricsBindAddress: addr, HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).NotTo(HaveOccurred())
		run(m)
		url := "https://" + addr + "/metrics"
		checkSecure(url)
		By("the reader sees the per-ApiKey metrics (namespaces, names, key ids)")
		Eventually(func() string { return get(url, readerToken, nil).body }, 30*time.Second, 500*time.Millisecond).
			Should(MatchRegexp(`keysmith_apikey_expiration_timestamp_seconds\{key_id="[0-9a-f]{12}",name="payments-api",namespace="` + tenant + `"\}`))
	})

	It("of the standalone verifier answer only authenticated, authorized scrapers, over HTTPS", func() {
		addr := freeAddress()
		v, err := operator.NewVerifierManager(impersonatedConfig(systemNamespace, verifierSA), operator.VerifierOptions{
			MetricsBindAddress: addr, HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).NotTo(HaveOccurred())
		run(v)
		body := checkSecure("https://" + addr + "/metrics")
		Expect(body).To(ContainSubstring("keysmith_verify_index_keys"))
	})

	It("fail closed when keysmith may not ask the API server (no keysmith-metrics-auth binding)", func() {
		// A verifier with its ClusterRole but without keysmith-metrics-auth, as when that binding is forgotten.
		const sa = "verifier-without-metrics-auth"
		Expect(k8s.Create(context.Background(), &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: sa},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keysmith-verifier"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: systemNamespace, Name: sa}},
		})).To(Succeed())
		addr := freeAddress()
		v, err := operator.NewVerifierManager(impersonatedConfig(systemNamespace, sa), operator.VerifierOptions{
			MetricsBindAddress: addr, HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).NotTo(HaveOccurred())
		run(v)
		url := "https://" + addr + "/metrics"
		waitServing(url)
		s := get(url, readerToken, nil)
		Expect(s.code).To(Equal(http.StatusInternalServerError), s.body)
		Expect(s.body).NotTo(ContainSubstring("keysmith_"))
	})

	It("with --metrics-secure=false (local runs: make dev, test/chaos) are plain HTTP for anyone", func() {
		addr := freeAddress()
		v, err := operator.NewVerifierManager(impersonatedConfig(systemNamespace, verifierSA), operator.VerifierOptions{
			MetricsBindAddress: addr, InsecureMetrics: true, HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).NotTo(HaveOccurred())
		run(v)
		url := "http://" + addr + "/metrics"
		waitServing(url)
		s := get(url, "", nil)
		Expect(s.code).To(Equal(http.StatusOK))
		Expect(s.body).To(ContainSubstring("keysmith_verify_index_keys"))
	})

	It("serve the certificate in --metrics-cert-dir, so that Prometheus can verify it", func() {
		dir := GinkgoT().TempDir()
		cert, key, err := certutil.GenerateSelfSignedCertKey("keysmith-metrics.keysmith-system.svc", []net.IP{{127, 0, 0, 1}}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(dir, operator.MetricsCertName), cert, 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, operator.MetricsKeyName), key, 0o600)).To(Succeed())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(cert)).To(BeTrue())

		addr := freeAddress()
		v, err := operator.NewVerifierManager(impersonatedConfig(systemNamespace, verifierSA), operator.VerifierOptions{
			MetricsBindAddress: addr, MetricsCertDir: dir, HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).NotTo(HaveOccurred())
		run(v)
		url := "https://" + addr + "/metrics"
		waitServing(url)
		s := get(url, readerToken, roots)
		Expect(s.code).To(Equal(http.StatusOK), s.body)

		By("a directory without tls.crt and tls.key is an error at start, not a silent self-signed certificate")
		_, err = operator.NewVerifierManager(rest.CopyConfig(cfg), operator.VerifierOptions{
			MetricsBindAddress: freeAddress(), MetricsCertDir: GinkgoT().TempDir(), HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")},
		})
		Expect(err).To(MatchError(ContainSubstring("--metrics-cert-dir")))
	})
})
