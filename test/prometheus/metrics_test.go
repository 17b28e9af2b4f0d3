package prometheus

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

const (
	eventually = 60 * time.Second
	poll       = 100 * time.Millisecond
)

var ctx = context.Background()

// httpClient opens a connection per request, so that none is left open when the verifiers shut down
// (they wait for their connections to end before closing the audit trail).
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// get returns the status code and body of GET url ("" and 0 when it does not answer).
func get(url string) (int, string) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape returns the body of a successful GET url.
func scrape(url string) string {
	GinkgoHelper()
	code, body := get(url)
	Expect(code).To(Equal(http.StatusOK), "GET %s", url)
	return body
}

// checkMetrics pipes a scrape into `promtool check metrics` and returns its output and whether it found
// no problem.
func checkMetrics(body string) (string, bool) {
	GinkgoHelper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		Expect(err).To(BeAssignableToTypeOf(exit), "running %s: %v", promtool, err)
	}
	return string(out), err == nil
}

// families returns the names of the metric families in a text exposition (from its # TYPE lines) and the
// names of its samples.
func families(body string) (fams map[string]bool, samples map[string]bool) {
	fams, samples = map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "# TYPE "):
			fams[strings.Fields(line)[2]] = true
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			samples[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	return fams, samples
}

func keysmithNames(m map[string]bool) []string {
	var out []string
	for n := range m {
		if strings.HasPrefix(n, "keysmith_") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// readNames returns the keysmith_ metric names that config/prometheus's rules and dashboard mention
// (hack/promtool resolves them exactly; here every keysmith_ word will do).
func readNames() []string {
	GinkgoHelper()
	seen := map[string]bool{}
	word := regexp.MustCompile(`\bkeysmith_[a-z0-9_]+`)
	for _, f := range []string{"config/prometheus/rules.yaml", "config/prometheus/grafana-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(moduleRoot(), f))
		Expect(err).NotTo(HaveOccurred())
		for _, w := range word.FindAllString(string(b), -1) {
			seen[w] = true
		}
	}
	return keysmithNames(seen)
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "metrics-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func getApiKey(ns, name string) *v1alpha1.ApiKey {
	GinkgoHelper()
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
	return ak
}

// issue creates an ApiKey and returns its key once it is Ready and its Secret holds the current key.
func issue(ns, name string, rotation *v1alpha1.RotationSpec) string {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"orders:read"}, SecretName: name + "-key", Rotation: rotation},
	})).To(Succeed())
	var key string
	Eventually(func(g Gomega) {
		ak := getApiKey(ns, name)
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-key"}, s)).To(Succeed())
		key = string(s.Data[v1alpha1.SecretKeyAPIKey])
		g.Expect(key).NotTo(BeEmpty())
	}, eventually, poll).Should(Succeed())
	return key
}

// verdict asks the verification API at host:port about key (the key never appears in a message).
func verdict(addr, key string) testenv.Verdict {
	return testenv.VerifyKey(httpClient, "http://"+addr, key)
}

// buildKeysmith builds ./cmd/keysmith into a temporary directory (most packages are already in the build
// cache from compiling this test) and returns its path.
func buildKeysmith() string {
	GinkgoHelper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go") // go test did not put go on PATH
	}
	out := filepath.Join(GinkgoT().TempDir(), "keysmith")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/keysmith")
	cmd.Dir = moduleRoot()
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build ./cmd/keysmith: %s", b)
	return out
}

// kubeconfig writes a kubeconfig for cfg (the control plane's administrator) and returns its path.
func kubeconfig() string {
	GinkgoHelper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, CertificateAuthority: cfg.CAFile}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientCertificate: cfg.CertFile,
		ClientKeyData: cfg.KeyData, ClientKey: cfg.KeyFile,
		Token: cfg.BearerToken, TokenFile: cfg.BearerTokenFile,
	}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin"}
	kc.CurrentContext = "local"
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(clientcmd.WriteToFile(*kc, path)).To(Succeed())
	return path
}

var _ = Describe("promtool check metrics", Ordered, func() {
	var (
		managerURL, verifierURL   string
		managerVerify, verifyAddr string
		ns                        string
		verifierLog               string
		verifierAudit             string
		managerAudit              string
	)

	BeforeAll(func() {
		By("the manager, in-process, with /metrics over plain HTTP (the body is the same as over HTTPS)")
		managerMetrics := freeAddress()
		managerAudit = filepath.Join(GinkgoT().TempDir(), "manager-audit.log")
		m, err := operator.NewManager(cfg, operator.Options{
			MetricsBindAddress: managerMetrics, InsecureMetrics: true, HealthProbeBindAddress: "0",
			Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", FlushInterval: time.Second,
				AuditSink: managerAudit},
		})
		Expect(err).NotTo(HaveOccurred())
		stopManager := testenv.Run(m) // may be called again: later calls return the first result
		DeferCleanup(func() { Expect(stopManager()).To(Succeed()) })
		managerURL = "http://" + managerMetrics + "/metrics"
		managerVerify = m.Verifier.HTTPAddr()

		By("the standalone verifier, as the keysmith verifier process")
		bin := buildKeysmith()
		dir := GinkgoT().TempDir()
		verifierMetrics, health := freeAddress(), freeAddress()
		verifyAddr = freeAddress()
		verifierLog = filepath.Join(dir, "verifier.log")
		verifierAudit = filepath.Join(dir, "verifier-audit.log")
		logFile, err := os.Create(verifierLog)
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.Command(bin, "verifier",
			"--metrics-bind-address="+verifierMetrics, "--metrics-secure=false", "--health-probe-bind-address="+health,
			"--verify-http-address="+verifyAddr, "--verify-grpc-address=0", "--verify-last-used-flush-interval=1s",
			"--verify-audit-sink="+verifierAudit)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig())
		cmd.Stdout, cmd.Stderr = logFile, logFile
		Expect(cmd.Start()).To(Succeed())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
		// The verifier and the manager stop at once: each takes its verification servers' shutdown timeout.
		DeferCleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			Expect(stopManager()).To(Succeed())
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			for _, f := range []string{verifierLog, verifierAudit, managerAudit} {
				b, err := os.ReadFile(f)
				Expect(err).NotTo(HaveOccurred())
				Expect(testenv.FindKeys(string(b))).To(BeZero(), "a key appears in %s", filepath.Base(f))
			}
		})
		verifierURL = "http://" + verifierMetrics + "/metrics"
		Eventually(func() int { code, _ := get("http://" + health + "/readyz"); return code }, eventually, poll).
			Should(Equal(http.StatusOK), "the verifier is not ready; see its log")

		By("ApiKeys: one in use, one on a rotation schedule, one disabled, one deleted")
		ns = newNamespace()
		key := issue(ns, "orders", nil)
		issue(ns, "scheduled", &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}})
		issue(ns, "paused", nil)
		Eventually(func() error {
			ak := getApiKey(ns, "paused")
			ak.Spec.Disabled = true
			return k8s.Update(ctx, ak)
		}, eventually, poll).Should(Succeed())
		issue(ns, "gone", nil)
		Expect(k8s.Delete(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}})).To(Succeed())

		By("verifications on both verifiers: accepted, refused, and a malformed request")
		for _, addr := range []string{managerVerify, verifyAddr} {
			Eventually(func() testenv.Verdict { return verdict(addr, key) }, eventually, poll).Should(Equal(testenv.Accepted))
			Expect(verdict(addr, "ks_live_notakeyatall")).To(Equal(testenv.Refused))
			resp, err := httpClient.Post("http://"+addr+"/v1/verify", "application/json", strings.NewReader("{"))
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
		}

		By("waiting until the manager exports every per-ApiKey family: last use (flushed each second), revocations")
		Eventually(func(g Gomega) {
			code, body := get(managerURL)
			g.Expect(code).To(Equal(http.StatusOK))
			_, samples := families(body)
			g.Expect(keysmithNames(samples)).To(ContainElements(
				"keysmith_apikey_last_used_timestamp_seconds", "keysmith_apikey_next_rotation_timestamp_seconds",
				"keysmith_apikey_revocations_total", "keysmith_apikey_rotations_total"))
			g.Expect(body).To(ContainSubstring(`keysmith_apikey_revocations_total{reason="Disabled"}`))
			g.Expect(body).To(ContainSubstring(`keysmith_apikey_revocations_total{reason="Deleted"}`))
			g.Expect(body).To(MatchRegexp(`keysmith_apikey_ready\{name="paused",namespace="` + ns + `",reason="Disabled"\} 0`))
		}, eventually, poll).Should(Succeed())
	})

	lint := func(what, url string) string {
		GinkgoHelper()
		body := scrape(url)
		out, ok := checkMetrics(body)
		fams, _ := families(body)
		report := fmt.Sprintf("promtool check metrics < %s /metrics (%d families, %d of them keysmith's): exit %v, output:\n%s",
			what, len(fams), len(keysmithNames(fams)), map[bool]string{true: "0", false: "non-zero"}[ok], out)
		AddReportEntry("promtool check metrics: "+what, report)
		fmt.Fprintln(GinkgoWriter, report)
		Expect(ok).To(BeTrue(), report)
		Expect(strings.TrimSpace(out)).To(BeEmpty(), report)
		return body
	}

	It("finds no problem in the manager's /metrics", func() {
		body := lint("the manager's", managerURL)
		fams, _ := families(body)
		By("the manager exports every keysmith family: its per-ApiKey ones and its in-process verifier's")
		Expect(keysmithNames(fams)).To(ConsistOf(
			"keysmith_apikey_expiration_timestamp_seconds", "keysmith_apikey_issued_timestamp_seconds",
			"keysmith_apikey_last_used_timestamp_seconds", "keysmith_apikey_next_rotation_timestamp_seconds",
			"keysmith_apikey_ready", "keysmith_apikey_revocations_total", "keysmith_apikey_rotations_total",
			"keysmith_verifications_total", "keysmith_verification_duration_seconds", "keysmith_verify_index_keys",
			"keysmith_verify_audit_dropped_total", "keysmith_verify_audit_write_errors_total",
			"keysmith_verify_invalid_requests_total"))
	})

	It("finds no problem in the standalone verifier's /metrics", func() {
		body := lint("the standalone verifier's", verifierURL)
		fams, _ := families(body)
		By("the verifier exports its own families and no per-ApiKey one (those are the manager's)")
		Expect(keysmithNames(fams)).To(ConsistOf(
			"keysmith_verifications_total", "keysmith_verification_duration_seconds", "keysmith_verify_index_keys",
			"keysmith_verify_audit_dropped_total", "keysmith_verify_audit_write_errors_total",
			"keysmith_verify_invalid_requests_total"))
		Expect(body).To(MatchRegexp(`(?m)^keysmith_verifications_total\{code="VALID"\} [1-9]`))
		Expect(body).To(MatchRegexp(`(?m)^keysmith_verify_invalid_requests_total\{code="BAD_REQUEST"\} 1$`))
	})

	It("has a sample of every metric the rules and the dashboard read, and the audit counters start at 0", func() {
		_, manager := families(scrape(managerURL))
		vbody := scrape(verifierURL)
		_, verifier := families(vbody)
		read := readNames()
		Expect(read).NotTo(BeEmpty())
		for _, n := range read {
			Expect(manager[n] || verifier[n]).To(BeTrue(), "%s is read by config/prometheus but in neither scrape", n)
		}
		// KeysmithVerifierAuditDrops and ...WriteErrors take increase() of the counters: a series that
		// appeared at its first drop would hide that drop, so every reason is exported from the start.
		for _, reason := range verify.DropReasons {
			Expect(vbody).To(MatchRegexp(`(?m)^keysmith_verify_audit_dropped_total\{reason="` + reason + `"\} 0$`))
		}
		Expect(vbody).To(MatchRegexp(`(?m)^keysmith_verify_audit_write_errors_total 0$`))
	})

	It("reports lint problems (promtool is really checking)", func() {
		out, ok := checkMetrics("# HELP keysmith_bad_counter A counter without _total.\n# TYPE keysmith_bad_counter counter\nkeysmith_bad_counter 1\n")
		Expect(ok).To(BeFalse())
		Expect(out).To(ContainSubstring(`keysmith_bad_counter counter metrics should have "_total" suffix`))
	})
})
