// Package localcluster runs the local control plane that the test suites and `keysmith dev` use: etcd and
// kube-apiserver through envtest, and kube-controller-manager with the garbage collector and the namespace
// controller, so that owner references, cascading and orphaning deletion and namespace deletion behave as
// they do in a cluster. The binaries come from the directory that `make controlplane` fills (bin/).
package localcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Controllers are the kube-controller-manager controllers the local cluster runs: the two that act on
// keysmith's objects. The others (deployments, service accounts, ...) have nothing to act on without a
// kubelet, or would need signing keys.
var Controllers = []string{"garbagecollector", "namespace"}

// Options configure Start.
type Options struct {
	// Assets is the directory holding etcd, kube-apiserver and kube-controller-manager.
	Assets string
	// CRDs are installed before Start returns.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// Configure adjusts the environment before it starts (API server flags, a fixed certificate directory).
	Configure func(*envtest.Environment)
	// WithoutControllerManager leaves kube-controller-manager out: nothing collects dependents or finishes
	// deleting a namespace.
	WithoutControllerManager bool
}

// Cluster is a running local control plane. It embeds the envtest environment, so that ControlPlane and
// AddUser are at hand; Stop stops kube-controller-manager first, then the API server and etcd.
type Cluster struct {
	*envtest.Environment
	Config *rest.Config

	assets string
	cm     *controllerManager
}

// Start starts etcd and kube-apiserver, installs the CRDs and then starts kube-controller-manager.
func Start(o Options) (*Cluster, error) {
	env := &envtest.Environment{BinaryAssetsDirectory: o.Assets, CRDs: o.CRDs, ErrorIfCRDPathMissing: true}
	if o.Configure != nil {
		o.Configure(env)
	}
	if !o.WithoutControllerManager {
		// Fail before starting anything when the binary is missing (an old bin/ from before it was built).
		if _, err := os.Stat(filepath.Join(o.Assets, "kube-controller-manager")); err != nil {
			return nil, fmt.Errorf("kube-controller-manager not found in %s (run 'make controlplane'): %w", o.Assets, err)
		}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s: %w", o.Assets, err)
	}
	c := &Cluster{Environment: env, Config: cfg, assets: o.Assets}
	if o.WithoutControllerManager {
		return c, nil
	}
	if c.cm, err = startControllerManager(env, o.Assets); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops kube-controller-manager, then kube-apiserver and etcd. It may be called more than once.
func (c *Cluster) Stop() error {
	var errs []error
	if c.cm != nil {
		errs = append(errs, c.cm.stop())
	}
	errs = append(errs, c.Environment.Stop())
	return errors.Join(errs...)
}

// StopControllerManager stops kube-controller-manager, as an outage of the control plane's controllers
// would: nothing collects dependents or finishes deleting a namespace until StartControllerManager.
func (c *Cluster) StopControllerManager() error {
	if c.cm == nil {
		return nil
	}
	err := c.cm.stop()
	c.cm = nil
	return err
}

// ControllerManagerRunning reports whether kube-controller-manager runs.
func (c *Cluster) ControllerManagerRunning() bool { return c.cm != nil }

// StartControllerManager starts kube-controller-manager again after StopControllerManager.
func (c *Cluster) StartControllerManager() error {
	if c.cm != nil {
		return errors.New("kube-controller-manager is running")
	}
	cm, err := startControllerManager(c.Environment, c.assets)
	if err != nil {
		return err
	}
	c.cm = cm
	return nil
}

// ControllerManagerLog returns the last lines kube-controller-manager wrote, for a failing test to show.
func (c *Cluster) ControllerManagerLog(lines int) string {
	if c.cm == nil {
		return ""
	}
	b, err := os.ReadFile(c.cm.logPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

type controllerManager struct {
	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}

	once sync.Once
	err  error
}

func startControllerManager(env *envtest.Environment, assets string) (*controllerManager, error) {
	// Its own identity, with the powers the controllers need (a cluster binds system:kube-controller-manager
	// and one role per controller; the local cluster has no use for that split).
	user, err := env.AddUser(envtest.User{Name: "system:kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the kube-controller-manager user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keysmith-kcm-")
	if err != nil {
		return nil, err
	}
	cm := &controllerManager{dir: dir, logPath: filepath.Join(dir, "kube-controller-manager.log"), exited: make(chan struct{})}
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(cm.logPath)
	if err != nil {
		return nil, err
	}
	cm.cmd = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--controllers="+strings.Join(Controllers, ","),
		"--leader-elect=false",
		"--secure-port=0", // no HTTPS endpoint: nothing scrapes it and it would need its own certificates
		"--concurrent-gc-syncs=5",
		"--v=2",
	)
	cm.cmd.Stdout, cm.cmd.Stderr = logFile, logFile
	// Killed with the process that started it, so that a test binary that dies leaves no controller
	// manager behind acting on a later run's API server. The signal follows the OS thread that started
	// it, not the process: that thread is locked to the goroutine that waits for the child until it exits.
	cm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	startErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cm.cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		_ = cm.cmd.Wait()
		logFile.Close()
		close(cm.exited)
	}()
	if err := <-startErr; err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	if err := cm.waitStarted(60 * time.Second); err != nil {
		_ = cm.stop()
		return nil, err
	}
	return cm, nil
}

// waitStarted waits until the garbage collector has synced its monitors of every resource and the
// namespace controller has started (their log lines say so), or kube-controller-manager has exited.
func (cm *controllerManager) waitStarted(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(cm.logPath)
		if started(string(b)) {
			return nil
		}
		select {
		case <-cm.exited:
			return fmt.Errorf("kube-controller-manager exited at start: %s", lastLines(string(b), 20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-controller-manager did not start its controllers within %s: %s", timeout, lastLines(string(b), 20))
		}
	}
}

// started reports whether the log shows both controllers at work.
func started(log string) bool {
	return strings.Contains(log, `"Proceeding to collect garbage"`) && strings.Contains(log, `"Starting namespace controller"`)
}

func lastLines(s string, n int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}

func (cm *controllerManager) stop() error {
	cm.once.Do(func() {
		select {
		case <-cm.exited:
		default:
			_ = cm.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-cm.exited:
			case <-time.After(10 * time.Second):
				_ = cm.cmd.Process.Kill()
				<-cm.exited
			}
		}
		cm.err = os.RemoveAll(cm.dir)
	})
	return cm.err
}
