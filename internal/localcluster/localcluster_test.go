package localcluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func assets(t *testing.T) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	d, err := filepath.Abs("../../bin")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The garbage collector deletes a dependent whose owner is gone, and the namespace controller finishes
// deleting a namespace: neither happens on an API server alone.
func TestControllerManagerCollects(t *testing.T) {
	c, err := Start(Options{Assets: assets(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	}()
	cs, ns := ownerDeleted(t, c)
	ctx := context.Background()
	waitGone(t, c, func() error {
		_, err := cs.CoreV1().ConfigMaps(ns.Name).Get(ctx, "dependent", metav1.GetOptions{})
		return err
	})
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, func() error { _, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); return err })
}

// Without kube-controller-manager the dependent stays and the namespace stays Terminating: what the
// test above checks is the controller manager's work, not the API server's.
func TestWithoutControllerManager(t *testing.T) {
	c, err := Start(Options{Assets: assets(t), WithoutControllerManager: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.ControllerManagerLog(1) != "" {
		t.Fatal("a controller manager log without a controller manager")
	}
	cs, ns := ownerDeleted(t, c)
	ctx := context.Background()
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if _, err := cs.CoreV1().ConfigMaps(ns.Name).Get(ctx, "dependent", metav1.GetOptions{}); err != nil {
		t.Fatalf("the dependent went without a garbage collector: %v", err)
	}
	got, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
	if err != nil || got.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("the namespace should stay Terminating without a namespace controller: %v %v", got.Status.Phase, err)
	}
}

// ownerDeleted creates a namespace with a ConfigMap that owns another, and deletes the owner.
func ownerDeleted(t *testing.T, c *Cluster) (*kubernetes.Clientset, *corev1.Namespace) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "gc-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dependent", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
	}}}}
	if _, err := cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps(ns.Name).Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return cs, ns
}

func waitGone(t *testing.T, c *Cluster, get func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := get()
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still there after 60s (err %v); kube-controller-manager:\n%s", err, c.ControllerManagerLog(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
