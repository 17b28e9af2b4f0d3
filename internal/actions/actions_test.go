package actions

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

var (
	ctx  = context.Background()
	name = types.NamespacedName{Namespace: "payments", Name: "billing-api"}
	t0   = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
)

func fixture(annotations map[string]string, handledRevoke string, mut ...func(*v1alpha1.ApiKey)) client.Client {
	s := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(s)
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name, Annotations: annotations},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "billing-api-key"},
		Status: v1alpha1.ApiKeyStatus{
			CurrentKeyID: "aaaaaaaaaaaa", HandledRevokeRequest: handledRevoke,
			Keys: []v1alpha1.IssuedKey{
				{ID: "aaaaaaaaaaaa", State: v1alpha1.KeyActive, IssuedAt: metav1.Time{Time: t0.Add(-time.Hour)}, NotAfter: metav1.Time{Time: t0.Add(90 * 24 * time.Hour)}},
				{ID: "bbbbbbbbbbbb", State: v1alpha1.KeyRetiring, IssuedAt: metav1.Time{Time: t0.Add(-31 * 24 * time.Hour)}, NotAfter: metav1.Time{Time: t0.Add(23 * time.Hour)}},
				{ID: "cccccccccccc", State: v1alpha1.KeyRevoked, IssuedAt: metav1.Time{Time: t0.Add(-61 * 24 * time.Hour)}, NotAfter: metav1.Time{Time: t0.Add(-time.Hour)}, Reason: "Manual"},
			},
		},
	}
	for _, m := range mut {
		m(ak)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(ak).WithStatusSubresource(ak).Build()
}

func annotation(t *testing.T, c client.Client, key string) string {
	t.Helper()
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(ctx, name, ak); err != nil {
		t.Fatal(err)
	}
	return ak.Annotations[key]
}

func TestRevokeValue(t *testing.T) {
	Now = func() time.Time { return t0 }
	defer func() { Now = time.Now }()
	tests := []struct {
		name      string
		previous  string
		handled   bool
		ids       []string
		all       bool
		want      string // the annotation afterwards
		unchanged bool
		err       string
	}{
		{name: "first", ids: []string{"aaaaaaaaaaaa"}, want: "aaaaaaaaaaaa"},
		{name: "two ids", ids: []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"}, want: "aaaaaaaaaaaa,bbbbbbbbbbbb"},
		{name: "all", all: true, want: "all"},
		{name: "appended to a pending value", previous: "bbbbbbbbbbbb", ids: []string{"aaaaaaaaaaaa"}, want: "bbbbbbbbbbbb,aaaaaaaaaaaa"},
		{name: "already pending", previous: "aaaaaaaaaaaa", ids: []string{"aaaaaaaaaaaa"}, want: "aaaaaaaaaaaa", unchanged: true},
		{name: "never appended to a pending all", previous: "all", ids: []string{"aaaaaaaaaaaa"}, want: "all", unchanged: true},
		{name: "all appended to pending ids", previous: "bbbbbbbbbbbb", all: true, want: "bbbbbbbbbbbb,all"},
		{name: "a handled value is replaced", previous: "dddddddddddd", handled: true, ids: []string{"aaaaaaaaaaaa"}, want: "aaaaaaaaaaaa"},
		{name: "a handled all is replaced by a new value", previous: "all", handled: true, all: true, want: "aaaaaaaaaaaa,bbbbbbbbbbbb,all"},
		{name: "a malformed value is replaced", previous: "not-a-key-id", ids: []string{"aaaaaaaaaaaa"}, want: "aaaaaaaaaaaa"},
		{name: "a pending key is kept as its id", previous: "PASTED", ids: []string{"aaaaaaaaaaaa"}, want: "ID(PASTED),aaaaaaaaaaaa"},
		{name: "duplicates in a pending value are dropped", previous: "bbbbbbbbbbbb, bbbbbbbbbbbb", ids: []string{"aaaaaaaaaaaa"}, want: "bbbbbbbbbbbb,aaaaaaaaaaaa"},
		{name: "already revoked: nothing sent", ids: []string{"cccccccccccc"}, want: "", unchanged: true},
		{name: "unknown id", ids: []string{"eeeeeeeeeeee"}, err: "lists no key eeeeeeeeeeee"},
		{name: "not an id", ids: []string{"EEEE"}, err: "12 lowercase hex digits"},
		{name: "neither", err: "not both and not neither"},
	}
	pasted, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.previous = strings.ReplaceAll(tt.previous, "PASTED", pasted.Plaintext())
			tt.want = strings.ReplaceAll(tt.want, "ID(PASTED)", keys.ID(pasted.Plaintext()))
			ann := map[string]string{}
			handled := ""
			if tt.previous != "" {
				ann[v1alpha1.AnnotationRevoke] = tt.previous
				if tt.handled {
					handled = rotation.RequestDigest(tt.previous)
				}
			}
			c := fixture(ann, handled)
			r, err := Revoke(ctx, c, name, tt.ids, tt.all)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := annotation(t, c, v1alpha1.AnnotationRevoke); got != tt.want {
				t.Errorf("annotation = %q, want %q", got, tt.want)
			}
			if strings.Contains(r.Message+r.Value, pasted.Plaintext()) || strings.Contains(r.Message, pasted.Body) {
				t.Errorf("the request repeats a key")
			}
			if r.Unchanged != tt.unchanged {
				t.Errorf("Unchanged = %v (%s)", r.Unchanged, r.Message)
			}
			if tt.all && !r.Unchanged && strings.Join(r.KeyIDs, ",") != "aaaaaaaaaaaa,bbbbbbbbbbbb" {
				t.Errorf("KeyIDs = %v", r.KeyIDs)
			}
			if _, _, problem := rotation.ParseRevokeRequest(tt.want); tt.want != "" && problem != "" {
				t.Errorf("keysmith would refuse %q: %s", tt.want, problem)
			}
		})
	}
}

func TestRevokeRefusedWhenDisabled(t *testing.T) {
	c := fixture(nil, "", func(ak *v1alpha1.ApiKey) { ak.Spec.Disabled = true })
	if _, err := Revoke(ctx, c, name, nil, true); !IsRefused(err) {
		t.Errorf("err = %v", err)
	}
	if _, err := Rotate(ctx, c, name); !IsRefused(err) {
		t.Errorf("rotate err = %v", err)
	}
	r, err := Disable(ctx, c, name)
	if err != nil || !r.Unchanged {
		t.Errorf("disable of a disabled ApiKey: %v %+v", err, r)
	}
}

func TestRotateValue(t *testing.T) {
	Now = func() time.Time { return t0 }
	defer func() { Now = time.Now }()
	c := fixture(nil, "")
	r, err := Rotate(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	if r.Value != "2026-11-27T12:00:00Z" || annotation(t, c, v1alpha1.AnnotationRotate) != r.Value || r.PreviousKeyID != "aaaaaaaaaaaa" {
		t.Errorf("request %+v", r)
	}
	// The same second again: a different value.
	r, err = Rotate(ctx, c, name)
	if err != nil || r.Value != "2026-11-27T12:00:00Z-2" {
		t.Errorf("second request %v %+v", err, r)
	}
}

func TestParseKeyID(t *testing.T) {
	k, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	id, isKey, err := ParseKeyID(k.Plaintext())
	if err != nil || !isKey || id != keys.ID(k.Plaintext()) {
		t.Errorf("a key: %q %v %v", id, isKey, err)
	}
	if id, isKey, err := ParseKeyID("0123456789ab"); err != nil || isKey || id != "0123456789ab" {
		t.Errorf("an id: %q %v %v", id, isKey, err)
	}
	bad := k.Plaintext()[:len(k.Plaintext())-1] + "x"
	if _, _, err := ParseKeyID(bad); err == nil || strings.Contains(err.Error(), bad) {
		t.Errorf("a broken key: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	if ValidateName("payments", "billing-api") != nil {
		t.Error("a valid name refused")
	}
	for _, n := range [][2]string{{"payments", strings.Repeat("a", 64)}, {"payments", "Billing"}, {"pay.ments", "a"}, {"payments", ""}} {
		if ValidateName(n[0], n[1]) == nil {
			t.Errorf("%v accepted", n)
		}
	}
}
