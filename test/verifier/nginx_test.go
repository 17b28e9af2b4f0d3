package verifier

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// nginxConf puts nginx's auth_request in front of an upstream, as docs/verifier.md documents it: the
// constraints and required scopes are in the auth URL, and the identity headers the upstream reads are set
// from the verifier's answer only (an empty value removes a header, so a client's own never passes).
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
error_log {{dir}}/error.log warn;
pid {{dir}}/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {{dir}}/body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;
  server {
    listen 127.0.0.1:{{port}};
    location / {
      auth_request /_keysmith;
      auth_request_set $apikey_id $upstream_http_x_apikey_id;
      auth_request_set $apikey_name $upstream_http_x_apikey_name;
      auth_request_set $apikey_scopes $upstream_http_x_apikey_scopes;
      proxy_set_header X-ApiKey-Id $apikey_id;
      proxy_set_header X-ApiKey-Name $apikey_name;
      proxy_set_header X-ApiKey-Scopes $apikey_scopes;
      proxy_pass http://{{upstream}};
    }
    location = /_keysmith {
      internal;
      proxy_pass http://{{verifier}}/authz?scopes=users:read&namespaces={{namespaces}}&environment=live;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`

// startNginx runs nginx with nginxConf and returns its base URL.
func startNginx(upstream, verifier, namespaces string) string {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, statErr := os.Stat(p); statErr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			Fail("nginx is not installed; .ci/run installs it (apt-get install nginx-light)")
		}
		Skip("nginx is not installed (apt-get install nginx-light)")
	}
	dir := GinkgoT().TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	port := l.Addr().(*net.TCPAddr).Port
	Expect(l.Close()).To(Succeed())
	conf := strings.NewReplacer("{{dir}}", dir, "{{port}}", fmt.Sprint(port), "{{upstream}}", upstream, "{{verifier}}", verifier, "{{namespaces}}", namespaces).Replace(nginxConf)
	Expect(os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600)).To(Succeed())
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	Eventually(func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed(), "nginx did not start")
	return url
}

var _ = Describe("nginx auth_request in front of an upstream", func() {
	It("allows valid keys of the accepted namespace, answers 401 and 403, passes only the verifier's identity headers, and refuses a revoked key on the next request", func() {
		var mu sync.Mutex
		var seen []http.Header
		seenNow := func() []http.Header { mu.Lock(); defer mu.Unlock(); return append([]http.Header(nil), seen...) }
		upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
			fmt.Fprint(w, "upstream ok")
		}))
		DeferCleanup(upstream.Close)

		ns, other := newNamespace(), newNamespace()
		proxy := startNginx(strings.TrimPrefix(upstream.URL, "http://"), mgr.Verifier.HTTPAddr(), ns+",elsewhere")
		ak, key := issue(ns, "nginx-client")
		_, unscoped := issue(ns, "no-users-read", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"audit:read"} })
		_, foreign := issue(other, "foreign")

		request := func(headers ...string) int {
			req, _ := http.NewRequest(http.MethodGet, proxy+"/orders/7", nil)
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		forged := []string{"X-ApiKey-Id", "000000000000", "X-ApiKey-Name", "victim/admin", "X-ApiKey-Scopes", "admin:write"}
		Expect(request(append([]string{"Authorization", "Bearer " + key}, forged...)...)).To(Equal(http.StatusOK))
		Expect(seenNow()).To(HaveLen(1))
		got := seenNow()[0]
		Expect(got.Values("X-ApiKey-Name")).To(Equal([]string{ns + "/nginx-client"}), "the upstream saw the verifier's identity, not the client's")
		Expect(got.Values("X-ApiKey-Id")).To(Equal([]string{ak.Status.CurrentKeyID}))
		Expect(got.Values("X-ApiKey-Scopes")).To(Equal([]string{"users:read,roles:manage"}))
		Expect(request("X-Api-Key", key)).To(Equal(http.StatusOK))
		Expect(request()).To(Equal(http.StatusUnauthorized))
		Expect(request(forged...)).To(Equal(http.StatusUnauthorized), "forged identity headers without a key")
		Expect(request(append([]string{"Authorization", "Bearer ks_live_nope"}, forged...)...)).To(Equal(http.StatusUnauthorized))
		Expect(request("Authorization", "Bearer "+unscoped)).To(Equal(http.StatusForbidden))
		Expect(request(append([]string{"Authorization", "Bearer " + foreign}, forged...)...)).To(Equal(http.StatusForbidden), "a valid key of a namespace the API does not accept")
		Expect(seenNow()).To(HaveLen(2), "refused requests never reach the upstream")
		for _, h := range seenNow() {
			Expect(h.Get("X-ApiKey-Name")).To(Equal(ns+"/nginx-client"), "no forged identity reached the upstream")
		}

		By("revoking: delete the ApiKey, the next request is refused")
		start := time.Now()
		Expect(k8s.Delete(context.Background(), get(ns, "nginx-client"))).To(Succeed())
		Eventually(func() int { return request("Authorization", "Bearer "+key) }, eventually, time.Millisecond).Should(Equal(http.StatusUnauthorized))
		GinkgoWriter.Printf("nginx: revoked key refused %s after the delete call\n", time.Since(start))
		Consistently(func() int { return request("Authorization", "Bearer "+key) }, time.Second, 50*time.Millisecond).Should(Equal(http.StatusUnauthorized))
	})
})
