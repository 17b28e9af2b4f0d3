// Package dashboard drives `kubectl apikey dashboard` in a real headless Chromium (Debian's chromium,
// through github.com/chromedp/chromedp) against the real control plane (internal/testenv) with keysmith's
// manager running in process. The dashboard runs in process too, with the client a user's kubeconfig
// gives: that user may get, list and watch ApiKeys everywhere and patch them in team-a only, and may
// read no Secret at all.
//
// It checks what a person sees and does (the ApiKeys listed, the warning for an expiring key, an ApiKey
// created elsewhere appearing without a reload, the timeline of one ApiKey, a revocation confirmed in a
// dialog and recorded by keysmith, a Forbidden shown as such) and what an attacker gets (nothing without
// the token, nothing through a rebound DNS name, nothing from a page of another origin posting to it),
// and takes the screenshots of docs/cli.md (dashboard): always into a temporary directory, and into
// docs/img/dashboard-*.png with KEYSMITH_SCREENSHOTS=1.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/dashboard"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

const (
	user      = "dashboard-user"
	eventual  = 30 * time.Second
	viewportW = 1360
	viewportH = 900
)

// seenRequest is a request the dashboard answered.
type seenRequest struct {
	method, path, host, origin, site string
	status                           int
	form                             bool // the attacker page's form post (?via=form)
}

func (r seenRequest) String() string {
	return fmt.Sprintf("%s %s (Host %s, Origin %q, Sec-Fetch-Site %q): %d", r.method, r.path, r.host, r.origin, r.site, r.status)
}

// chromium finds the browser, or fails the test (never skips) saying how to install it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not on PATH: the dashboard's browser test needs Debian's chromium package " +
		"(apt-get install -y chromium; .ci/run installs it)")
	return ""
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func newApiKey(ns, name string, expires time.Duration, rotation time.Duration) *v1alpha1.ApiKey {
	a := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "orders:write"}, SecretName: name + "-key"},
	}
	if expires > 0 {
		a.Spec.ExpiresAfter = duration(expires)
	}
	if rotation > 0 {
		a.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: rotation}}
	}
	return a
}

// eventually polls f every 100 ms until it returns nil, for at most eventual.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(eventual)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// js evaluates expr in the page until it is true, for at most eventual (CDP evaluation is not subject to
// the page's Content-Security-Policy; the page's own script is).
func js(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	eventually(t, what, func() error {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("not yet: " + expr)
		}
		return nil
	})
}

func text(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return s
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, eventual)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// screenshots go to a temporary directory, and to docs/img with KEYSMITH_SCREENSHOTS=1.
type screenshots struct{ dirs []string }

func (s *screenshots) take(t *testing.T, ctx context.Context, name string, full bool) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // let the fade-in of a new row and the dialog's backdrop settle
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100) // 100: PNG
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s is not a PNG", name)
	}
	for _, d := range s.dirs {
		if err := os.WriteFile(filepath.Join(d, "dashboard-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot dashboard-%s.png (%d KiB) in %s", name, len(png)/1024, strings.Join(s.dirs, ", "))
}

func TestDashboard(t *testing.T) {
	browser := chromium(t)
	var logs testenv.Buffer
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs)))
	defer func() {
		if t.Failed() {
			l := logs.String()
			t.Logf("the manager's last log lines:\n%s", l[max(0, len(l)-6000):])
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// ---- the control plane, keysmith, and the user ----
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	}()
	admin, err := client.New(cfg, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	_, stopManager, err := testenv.StartManager(cfg, filepath.Join(t.TempDir(), "audit.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stopManager(); err != nil {
			t.Error(err)
		}
		if n := testenv.FindKeys(logs.String()); n != 0 {
			t.Errorf("%d keys in the logs", n)
		}
	}()

	for _, ns := range []string{"team-a", "team-b"} {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// The user: get, list and watch ApiKeys in every namespace, patch them in team-a only, no Secret.
	rbac := []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "apikey-viewer"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"keysmith.dev"}, Resources: []string{"apikeys"}, Verbs: []string{"get", "list", "watch"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "apikey-viewer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "apikey-viewer"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "apikey-operator"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"keysmith.dev"}, Resources: []string{"apikeys"}, Verbs: []string{"patch"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "apikey-operator"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "apikey-operator"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}},
	}
	for _, o := range rbac {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	u, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	userCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig) // as the plugin reads --kubeconfig
	if err != nil {
		t.Fatal(err)
	}
	userClient, err := client.NewWithWatch(userCfg, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		t.Fatal(err)
	}

	// ---- the ApiKeys ----
	// A foreign Secret under reports' secretName: keysmith never adopts it (Stalled, SecretConflict).
	if err := admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "reports-key"}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*v1alpha1.ApiKey{
		newApiKey("team-a", "billing-api", 0, 720*time.Hour),
		newApiKey("team-a", "legacy-partner", 72*time.Hour, 0), // shorter than the 14-day warning, no rotation
		newApiKey("team-a", "partner-webhook", 1200*time.Hour, 0),
		newApiKey("team-b", "ci-pipeline", 0, 168*time.Hour),
		newApiKey("team-b", "reports", 0, 1080*time.Hour),
	} {
		if err := admin.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	get := func(ns, name string) *v1alpha1.ApiKey {
		a := &v1alpha1.ApiKey{}
		if err := admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	condition := func(ns, name, typ string) *metav1.Condition {
		return meta.FindStatusCondition(get(ns, name).Status.Conditions, typ)
	}
	for _, k := range [][2]string{{"team-a", "billing-api"}, {"team-a", "legacy-partner"}, {"team-a", "partner-webhook"}, {"team-b", "ci-pipeline"}} {
		eventually(t, k[0]+"/"+k[1]+" Ready", func() error {
			if c := condition(k[0], k[1], v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("Ready %v", c)
			}
			return nil
		})
	}
	eventually(t, "team-b/reports stalled by the foreign Secret", func() error {
		if c := condition("team-b", "reports", v1alpha1.ConditionStalled); c == nil || c.Reason != v1alpha1.ReasonSecretConflict {
			return fmt.Errorf("Stalled %v", c)
		}
		return nil
	})
	if c := condition("team-a", "legacy-partner", v1alpha1.ConditionExpiringSoon); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("legacy-partner is not ExpiringSoon at once: %v", c)
	}
	// One rotation of billing-api, so that its timeline has two keys.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"keysmith.dev/rotate":"first"}}}`))
	if err := admin.Patch(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing-api"}}, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, "billing-api rotated", func() error {
		if a := get("team-a", "billing-api"); len(a.Status.Keys) != 2 || a.Status.Keys[1].State != v1alpha1.KeyRetiring {
			return fmt.Errorf("%d keys", len(a.Status.Keys))
		}
		return nil
	})

	// ---- the dashboard, as the user ----
	var seenMu sync.Mutex
	var seen []seenRequest
	s, err := dashboard.New(dashboard.Options{Client: userClient, FallbackNamespace: "default", WaitTimeout: eventual,
		OnRequest: func(r *http.Request, status int) {
			seenMu.Lock()
			defer seenMu.Unlock()
			seen = append(seen, seenRequest{method: r.Method, path: r.URL.Path, host: r.Host, origin: r.Header.Get("Origin"),
				site: r.Header.Get("Sec-Fetch-Site"), status: status, form: r.URL.Query().Get("via") == "form"})
		}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the dashboard did not stop")
		}
	}()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.Origin(), "http://"))

	// ---- the browser ----
	shots := &screenshots{dirs: []string{t.TempDir()}}
	if os.Getenv("KEYSMITH_SCREENSHOTS") == "1" {
		shots.dirs = append(shots.dirs, filepath.Join("..", "..", "docs", "img"))
	}
	start := time.Now()
	tab, stopBrowser := startChromium(t, ctx, browser)
	defer stopBrowser()
	var consoleMu sync.Mutex
	var console []string
	go func() {
		for m, err := range chromedp.Console(tab) {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, string(m.Type)+" "+m.URL+": "+m.Text)
			consoleMu.Unlock()
		}
	}()
	t.Logf("chromium started in %s", time.Since(start).Round(time.Millisecond))

	t.Run("lists every ApiKey the user can see", func(t *testing.T) {
		do(t, tab, chromedp.Navigate(s.URL()), chromedp.WaitVisible(chromedp.CSS(`#apikeys tbody tr[data-key="team-b/reports"]`)))
		js(t, tab, "five rows", `document.querySelectorAll('#apikeys tbody tr').length === 5`)
		js(t, tab, "live", `document.getElementById('status').textContent === 'live'`)
		if loc := text(t, tab, `location.href`); strings.Contains(loc, "token") {
			t.Fatalf("the token stayed in the address bar: %s", loc)
		}
		row := text(t, tab, `document.querySelector('#apikeys tbody tr[data-key="team-a/billing-api"]').innerText`)
		if id := get("team-a", "billing-api").Status.CurrentKeyID; !strings.Contains(row, id) || !strings.Contains(row, "True") || !strings.Contains(row, "users:read") {
			t.Fatalf("billing-api row %q lacks Ready, scopes or key %s", row, id)
		}
		head := text(t, tab, `document.querySelector('#apikeys thead').innerText`)
		for _, c := range dashboard.Columns {
			if !strings.Contains(head, c) {
				t.Errorf("column %s missing from %q", c, head)
			}
		}
	})

	t.Run("flags the expiring key and the stalled one at the top", func(t *testing.T) {
		js(t, tab, "the expiring warning", `!!document.querySelector('#warnings li.expiring[data-key="team-a/legacy-partner"]')`)
		w := text(t, tab, `document.querySelector('#warnings li.expiring[data-key="team-a/legacy-partner"]').innerText`)
		if !strings.Contains(w, "expires in") {
			t.Fatalf("warning %q", w)
		}
		js(t, tab, "the stalled warning", `!!document.querySelector('#warnings li.stalled[data-key="team-b/reports"]')`)
		if w := text(t, tab, `document.querySelector('#warnings').innerText`); strings.Contains(w, "billing-api") || strings.Contains(w, "ci-pipeline") {
			t.Fatalf("healthy ApiKeys flagged: %q", w)
		}
		// The chart: legacy-partner's expiry within days, partner-webhook's at 50, the rotations.
		js(t, tab, "the chart", `document.querySelectorAll('#chart svg rect.bar.expiry').length === 2 && document.querySelectorAll('#chart svg rect.bar.rotation').length === 2`)
		shots.take(t, tab, "overview", true)
	})

	t.Run("shows an ApiKey created elsewhere without a reload", func(t *testing.T) {
		do(t, tab, chromedp.Evaluate[chromedp.Void](`window.__sameDocument = 'yes'`))
		created := time.Now()
		if err := admin.Create(ctx, newApiKey("team-b", "new-service", 0, 1440*time.Hour)); err != nil {
			t.Fatal(err)
		}
		js(t, tab, "the new row", `!!document.querySelector('#apikeys tbody tr[data-key="team-b/new-service"]')`)
		t.Logf("the new ApiKey appeared after %s", time.Since(created).Round(time.Millisecond))
		if text(t, tab, `window.__sameDocument || ''`) != "yes" {
			t.Fatal("the page was reloaded")
		}
		id := ""
		eventually(t, "new-service Ready", func() error {
			if id = get("team-b", "new-service").Status.CurrentKeyID; id == "" {
				return errors.New("no key yet")
			}
			return nil
		})
		js(t, tab, "its key id", `document.querySelector('#apikeys tbody tr[data-key="team-b/new-service"]').innerText.includes('`+id+`')`)
	})

	var current string
	t.Run("shows the timeline of one ApiKey", func(t *testing.T) {
		a := get("team-a", "billing-api")
		current = a.Status.CurrentKeyID
		retired := a.Status.Keys[1].ID
		do(t, tab, chromedp.Click(chromedp.CSS(`#apikeys tbody tr[data-key="team-a/billing-api"]`)), chromedp.WaitVisible(chromedp.CSS(`#detail`)))
		js(t, tab, "the timeline", `document.querySelectorAll('#timeline li').length >= 4`)
		tl := text(t, tab, `document.getElementById('timeline').innerText`)
		for _, want := range []string{"key " + retired + " issued", "key " + current + " issued, replacing " + retired, "retiring", "next scheduled rotation"} {
			if !strings.Contains(tl, want) {
				t.Errorf("timeline lacks %q:\n%s", want, tl)
			}
		}
		if got := text(t, tab, `document.getElementById('revoke').textContent`); got != "Revoke key "+current {
			t.Fatalf("revoke button %q", got)
		}
		shots.take(t, tab, "timeline", false)
	})

	t.Run("revokes the current key after a confirmation", func(t *testing.T) {
		do(t, tab, chromedp.Click(chromedp.CSS(`#revoke`)), chromedp.WaitVisible(chromedp.CSS(`dialog#confirm[open]`)))
		if d := text(t, tab, `document.getElementById('confirm').innerText`); !strings.Contains(d, "Revoke key "+current+" of team-a/billing-api?") {
			t.Fatalf("dialog %q", d)
		}
		shots.take(t, tab, "confirm", false)
		// Cancel first: nothing happens.
		do(t, tab, chromedp.Click(chromedp.CSS(`#confirm-cancel`)))
		js(t, tab, "the dialog closed", `!document.getElementById('confirm').open`)
		time.Sleep(300 * time.Millisecond)
		if _, ok := get("team-a", "billing-api").Annotations[v1alpha1.AnnotationRevoke]; ok {
			t.Fatal("cancel revoked")
		}
		do(t, tab, chromedp.Click(chromedp.CSS(`#revoke`)), chromedp.WaitVisible(chromedp.CSS(`dialog#confirm[open]`)),
			chromedp.Click(chromedp.CSS(`#confirm-ok`)))
		eventually(t, "key "+current+" revoked in status", func() error {
			for _, k := range get("team-a", "billing-api").Status.Keys {
				if k.ID == current {
					if k.State != v1alpha1.KeyRevoked || k.Reason != v1alpha1.RevokedManual {
						return fmt.Errorf("state %s reason %q", k.State, k.Reason)
					}
					return nil
				}
			}
			return errors.New("key gone")
		})
		a := get("team-a", "billing-api")
		if a.Status.CurrentKeyID == current || a.Annotations[v1alpha1.AnnotationRevoke] != current {
			t.Fatalf("current key %s, annotation %q", a.Status.CurrentKeyID, a.Annotations[v1alpha1.AnnotationRevoke])
		}
		js(t, tab, "Revoked on the page", `(document.querySelector('#keys tr[data-key-id="`+current+`"]')||{innerText:''}).innerText.includes('Revoked')`)
		js(t, tab, "keysmith's confirmation", `document.getElementById('toast').textContent.includes('`+current+`') && !document.getElementById('toast').textContent.includes('waiting')`)
		t.Logf("toast: %s", text(t, tab, `document.getElementById('toast').textContent`))
		if err := admin.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: "billing-api"}, a); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("shows a Forbidden from the API server as such", func(t *testing.T) {
		do(t, tab, chromedp.Click(chromedp.CSS(`#detail-close`)))
		js(t, tab, "the detail closed", `document.getElementById('detail').hidden`)
		do(t, tab, chromedp.Click(chromedp.CSS(`#apikeys tbody tr[data-key="team-b/ci-pipeline"]`)), chromedp.WaitVisible(chromedp.CSS(`#detail`)))
		js(t, tab, "ci-pipeline open", `document.getElementById('detail-title').textContent === 'team-b/ci-pipeline'`)
		do(t, tab, chromedp.Click(chromedp.CSS(`#rotate`)), chromedp.WaitVisible(chromedp.CSS(`dialog#confirm[open]`)), chromedp.Click(chromedp.CSS(`#confirm-ok`)))
		js(t, tab, "the Forbidden toast", `document.getElementById('toast').className === 'error' && document.getElementById('toast').textContent.includes('Forbidden')`)
		msg := text(t, tab, `document.getElementById('toast').textContent`)
		if !strings.Contains(msg, `User "`+user+`" cannot patch resource "apikeys"`) {
			t.Fatalf("toast %q lacks the API server's message", msg)
		}
		if _, ok := get("team-b", "ci-pipeline").Annotations[v1alpha1.AnnotationRotate]; ok {
			t.Fatal("ci-pipeline was rotated")
		}
	})

	t.Run("refuses requests without the token, with a foreign Host, and cross-origin posts", func(t *testing.T) {
		before := get("team-a", "legacy-partner")
		// Plain HTTP, as another local user would.
		res, err := http.Get(s.Origin() + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: %d", res.StatusCode)
		}
		res, err = http.Get(s.Origin() + "/api/apikeys")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("data without token: %d", res.StatusCode)
		}
		req, _ := http.NewRequest("GET", s.URL(), nil)
		req.Host = "rebind.test:" + port
		if res, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("foreign Host: %d", res.StatusCode)
		}

		// In the browser: a DNS rebinding (rebind.test now resolves to 127.0.0.1), with the token.
		do(t, tab, chromedp.Navigate(strings.Replace(s.URL(), "127.0.0.1", "rebind.test", 1)))
		if body := text(t, tab, `document.body.innerText`); !strings.Contains(body, "misdirected request") {
			t.Fatalf("the rebound page showed %q", body)
		}

		// A page of another origin in the same browser (which holds the dashboard's cookie): another
		// server on 127.0.0.1 (same site, so the Strict cookie goes along) and evil.test. It posts to the
		// actions every way a page can: a form, a no-cors fetch, and a CORS fetch with a guessed token.
		attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<!doctype html><html><body>
<form id="f" method="POST" action="%[1]s/api/apikeys/team-a/legacy-partner/disable?via=form" enctype="text/plain" target="sink"><input name='{"a":"' value='"}'></form>
<iframe name="sink"></iframe>
<script>
window.results = [];
async function attack() {
  try { await fetch('%[1]s/api/apikeys/team-a/legacy-partner/disable', {method: 'POST', mode: 'no-cors', credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: '{}'}); window.results.push('no-cors sent'); } catch (e) { window.results.push('no-cors failed'); }
  try { const r = await fetch('%[1]s/api/apikeys/team-a/legacy-partner/disable', {method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json', 'X-Keysmith-Token': 'guess'}, body: '{}'}); window.results.push('cors ' + r.status); } catch (e) { window.results.push('cors blocked'); }
  try { const r = await fetch('%[1]s/api/apikeys', {credentials: 'include'}); window.results.push('read ' + r.status + ' ' + (await r.text()).length); } catch (e) { window.results.push('read blocked'); }
  document.getElementById('f').submit();
  window.results.push('form submitted');
}
attack();
</script></body></html>`, s.Origin())
		}))
		defer attacker.Close()
		_, aport, _ := net.SplitHostPort(strings.TrimPrefix(attacker.URL, "http://"))
		for _, origin := range []string{attacker.URL, "http://evil.test:" + aport} {
			do(t, tab, chromedp.Navigate(origin+"/"))
			js(t, tab, "the attack from "+origin, `(window.results || []).includes('form submitted')`)
			// The form's request is sent after the script ends: wait until the dashboard answered it.
			eventually(t, "the forged form post from "+origin+" answered", func() error {
				seenMu.Lock()
				defer seenMu.Unlock()
				for _, r := range seen {
					if r.form && r.method == "POST" && (r.origin == origin || r.origin == "") {
						return nil
					}
				}
				return errors.New("not yet")
			})
			results := text(t, tab, `window.results.join('; ')`)
			t.Logf("attack from %s: %s", origin, results)
			if strings.Contains(results, "cors 2") || strings.Contains(results, "read 2") {
				t.Fatalf("a page of %s read or acted: %s", origin, results)
			}
		}
		// What reached the dashboard from those pages, and what it answered.
		seenMu.Lock()
		var attacks []seenRequest
		for _, r := range seen {
			if r.origin == attacker.URL || strings.HasPrefix(r.origin, "http://evil.test") || strings.HasPrefix(r.host, "rebind.test") ||
				(r.site != "" && r.site != "same-origin" && r.site != "none") {
				attacks = append(attacks, r)
			}
		}
		seenMu.Unlock()
		posts := 0
		for _, r := range attacks {
			t.Logf("refused: %s", r)
			if r.status < 400 {
				t.Errorf("answered %s", r)
			}
			if r.method == "POST" {
				posts++
			}
		}
		if posts == 0 {
			t.Error("no forged POST reached the dashboard: the test proves only what the browser blocks")
		}
		after := get("team-a", "legacy-partner")
		if after.Spec.Disabled || after.Generation != before.Generation {
			t.Fatal("a cross-origin page disabled legacy-partner")
		}

		// And with every secret but the Origin (a client that copied cookie and token): refused.
		req, _ = http.NewRequest("POST", s.Origin()+"/api/apikeys/team-a/legacy-partner/disable", strings.NewReader(`{}`))
		req.Header.Set(dashboard.TokenHeader, s.Token())
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://evil.test:"+aport)
		if res, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized && res.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST: %d", res.StatusCode)
		}
		if get("team-a", "legacy-partner").Spec.Disabled {
			t.Fatal("legacy-partner disabled")
		}
	})

	t.Run("no key on the page, no script error, no CSP violation", func(t *testing.T) {
		do(t, tab, chromedp.Navigate(s.Origin()+"/")) // the cookie opens the page; the tab's session storage holds the token
		js(t, tab, "six rows again", `document.querySelectorAll('#apikeys tbody tr').length === 6`)
		html := text(t, tab, `document.documentElement.outerHTML`)
		if n := testenv.FindKeys(html); n != 0 {
			t.Fatalf("%d keys on the page", n)
		}
		consoleMu.Lock()
		defer consoleMu.Unlock()
		for _, m := range console {
			if !strings.Contains(m, s.Origin()) && !strings.HasPrefix(m, "exception") {
				continue // the attacker's and the rebound pages' own failures
			}
			if strings.Contains(m, `"frame-ancestors 'none'"`) {
				continue // the attacker's form posted into its own frame: the dashboard's answer refused to be framed
			}
			if strings.HasPrefix(m, "exception") || strings.Contains(m, "Content Security Policy") {
				t.Errorf("console: %s", m)
			}
		}
	})
}

// startChromium starts headless Chromium and opens a tab. A Chromium that starts but never answers on
// its debugging pipe (seen once in 30 runs on a loaded 2-core machine) is killed after a minute and
// started again, up to three times, instead of hanging the suite.
func startChromium(t *testing.T, ctx context.Context, browser string) (context.Context, func()) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(viewportW, viewportH),
			chromedp.Flag("lang", "en-US"),
			// rebind.test and evil.test resolve to 127.0.0.1: a DNS rebinding and a foreign site, on this machine.
			chromedp.Flag("host-resolver-rules", "MAP rebind.test 127.0.0.1, MAP evil.test 127.0.0.1"),
		)...)
		tab, cancelTab := chromedp.NewContext(alloc)
		stop := func() { cancelTab(); cancelAlloc() }
		started := make(chan error, 1)
		go func() { started <- chromedp.Do(tab, chromedp.Navigate("about:blank")) }() // the first Run starts the browser
		select {
		case err := <-started:
			if err != nil {
				stop()
				t.Fatalf("starting chromium (%s): %v", browser, err)
			}
			return tab, stop
		case <-time.After(time.Minute):
			stop()
			<-started
			if attempt == 3 {
				t.Fatalf("chromium (%s) did not answer within a minute, three times", browser)
			}
			t.Logf("chromium did not answer within a minute (attempt %d); starting it again", attempt)
		}
	}
}
