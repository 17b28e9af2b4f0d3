package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// Memory is the manager's peak RSS, as a separate process, with many ApiKeys and many foreign Secrets.
type Memory struct {
	ApiKeys        int     `json:"apiKeys"`
	ForeignSecrets int     `json:"foreignSecrets"`
	ForeignBytes   int     `json:"foreignSecretBytes"`
	ReadySeconds   float64 `json:"readySeconds"`
	PeakRSSMiB     float64 `json:"peakRSSMiB"`
	RSSMiB         float64 `json:"rssMiB"`
	GOGC           string  `json:"gogc"`
}

// runMemory creates foreign Secrets (no keysmith label) across namespaces and ApiKeys, starts
// `bin/keysmith manager` against the control plane, waits until every ApiKey is Ready and reads the
// process's peak RSS (VmHWM) from /proc.
func runMemory(ctx context.Context, env *envtest.Environment, c client.Client, keysN, foreignN, workers int, gogc string) (Memory, error) {
	res := Memory{ApiKeys: keysN, ForeignSecrets: foreignN, ForeignBytes: 1024, GOGC: gogc}
	payload := []byte(strings.Repeat("x", res.ForeignBytes))
	const foreignNamespaces = 10
	for i := 0; i < foreignNamespaces; i++ {
		if err := createNamespace(ctx, c, fmt.Sprintf("foreign-%d", i)); err != nil {
			return res, err
		}
	}
	fmt.Printf("memory: creating %d foreign Secrets of %d bytes...\n", foreignN, res.ForeignBytes)
	if err := parallel(foreignN, workers, func(i int) error {
		return client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("foreign-%d", i%foreignNamespaces), Name: fmt.Sprintf("s-%06d", i),
				Labels: map[string]string{"app": "someone-else"}},
			Data: map[string][]byte{"payload": payload},
		}))
	}); err != nil {
		return res, err
	}
	const ns = "memory"
	if err := createNamespace(ctx, c, ns); err != nil {
		return res, err
	}
	fmt.Printf("memory: creating %d ApiKeys...\n", keysN)
	if err := parallel(keysN, workers, func(i int) error { return client.IgnoreAlreadyExists(c.Create(ctx, scaleKey(ns, i))) }); err != nil {
		return res, err
	}

	user, err := env.AddUser(envtest.User{Name: "bench-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return res, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "keysmith-bench")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return res, err
	}
	bin, err := filepath.Abs("bin/keysmith")
	if err != nil {
		return res, err
	}
	cmd := exec.Command(bin, "manager", "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--verify-http-address=127.0.0.1:0", "--verify-grpc-address=0", "--verify-audit-sink="+filepath.Join(dir, "audit.log"),
		"--zap-log-level=error")
	// GOGC=50 as config/manager/manager.yaml sets it; -gogc changes it for comparison.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "GOGC="+gogc)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting %s (make build first): %w", bin, err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	deadline := time.Now().Add(15 * time.Minute)
	for {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("ApiKeys not Ready after 15 minutes")
		}
		list := &v1alpha1.ApiKeyList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return res, err
		}
		ready := 0
		for _, ak := range list.Items {
			if meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready == keysN {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	res.ReadySeconds = time.Since(start).Seconds()
	time.Sleep(5 * time.Second) // settle: the verifier index and caches are complete
	hwm, rss, err := rssOf(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	res.PeakRSSMiB, res.RSSMiB = hwm, rss
	return res, nil
}

// rssOf reads VmHWM (peak) and VmRSS of pid in MiB.
func rssOf(pid int) (hwm, rss float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmHWM:":
			hwm = kb / 1024
		case "VmRSS:":
			rss = kb / 1024
		}
	}
	return hwm, rss, sc.Err()
}
