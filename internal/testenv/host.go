package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// Host describes the machine and the software the run measured.
type Host struct {
	CPU           string  `json:"cpu"`
	CPUs          int     `json:"cpus"`
	SHANI         bool    `json:"shaNI"`
	MemoryGiB     float64 `json:"memoryGiB"`
	Kernel        string  `json:"kernel"`
	Platform      string  `json:"platform"`
	Go            string  `json:"go"`
	KubeAPIServer string  `json:"kubeAPIServer"`
	Etcd          string  `json:"etcd"`
	Commit        string  `json:"commit"`
}

// DescribeHost reads /proc, asks the API server for its version and etcd for its own; what it cannot
// find stays empty.
func DescribeHost(cfg *rest.Config) Host {
	h := Host{CPUs: runtime.NumCPU(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				if h.CPU == "" {
					h.CPU = strings.Join(strings.Fields(v), " ")
				}
			case "flags":
				h.SHANI = h.SHANI || strings.Contains(" "+v+" ", " sha_ni ")
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				h.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if dc, err := discovery.NewDiscoveryClientForConfig(cfg); err == nil {
		if v, err := dc.ServerVersion(); err == nil {
			h.KubeAPIServer = v.GitVersion
		}
	}
	if assets, err := Assets(); err == nil {
		etcd := filepath.Join(assets, "etcd")
		if out, err := exec.Command(etcd, "--version").Output(); err == nil {
			if m := regexp.MustCompile(`etcd Version: (\S+)`).FindSubmatch(out); m != nil {
				h.Etcd = "v" + strings.TrimPrefix(string(m[1]), "v")
			}
		}
		if h.Etcd == "" { // make controlplane links bin/etcd to a directory named etcd-vX.Y.Z-goA.B.C
			if target, err := filepath.EvalSymlinks(etcd); err == nil {
				h.Etcd = regexp.MustCompile(`v\d+\.\d+\.\d+`).FindString(target)
			}
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		h.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			h.Commit += " with uncommitted changes"
		}
	}
	return h
}

// String is a one-line description for reports.
func (h Host) String() string {
	return fmt.Sprintf("%s, %d CPUs, %.0f GiB, %s, %s, kube-apiserver %s, etcd %s", h.CPU, h.CPUs, h.MemoryGiB, h.Platform, h.Go, h.KubeAPIServer, h.Etcd)
}
