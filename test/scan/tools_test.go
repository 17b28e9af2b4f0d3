package scan

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

// gitleaksBin is the gitleaks that hack/tools/go.mod pins, as `go tool` builds it (found with go tool -n,
// so that each run costs no go command).
func gitleaksBin() []string {
	GinkgoHelper()
	root := moduleRoot()
	goTool := []string{goBin(), "tool", "-modfile=" + filepath.Join(root, "hack", "tools", "go.mod")}
	cmd := exec.Command(goTool[0], append(goTool[1:], "-n", "gitleaks")...)
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		if bin := strings.TrimSpace(string(out)); !strings.ContainsAny(bin, " \n") {
			if _, err := os.Stat(bin); err == nil {
				return []string{bin}
			}
		}
	}
	return append(goTool, "gitleaks")
}

// gitleaksFinding is what the specs read of gitleaks' JSON report.
type gitleaksFinding struct {
	RuleID    string
	File      string
	StartLine int
	Secret    string
	Match     string
	Commit    string
}

// gitleaks runs the pinned gitleaks with config/scanners/gitleaks.toml and --redact, and returns its
// findings sorted by file and line; neither its output nor its report may hold a key.
func gitleaks(args ...string) (code int, findings []gitleaksFinding) {
	GinkgoHelper()
	report := filepath.Join(GinkgoT().TempDir(), "report.json")
	cmdline := append(gitleaksBin(), args...)
	cmdline = append(cmdline, "--config", filepath.Join(moduleRoot(), "config", "scanners", "gitleaks.toml"),
		"--report-format", "json", "--report-path", report, "--redact", "--no-banner", "--no-color")
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Dir = moduleRoot()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		Expect(err).NotTo(HaveOccurred())
	}
	b, rerr := os.ReadFile(report)
	Expect(rerr).NotTo(HaveOccurred(), "gitleaks wrote no report: %s", out.String())
	_, _ = outputs.Write(append(out.Bytes(), b...))
	Expect(testenv.FindKeys(out.String())).To(BeZero(), "gitleaks printed a key")
	Expect(testenv.FindKeys(string(b))).To(BeZero(), "gitleaks' report holds a key")
	GinkgoWriter.Printf("$ gitleaks %s\n%s%s\n", strings.Join(args, " "), out.String(), b)
	Expect(json.Unmarshal(b, &findings)).To(Succeed())
	sort.Slice(findings, func(i, j int) bool {
		if findings[i].File != findings[j].File {
			return findings[i].File < findings[j].File
		}
		return findings[i].StartLine < findings[j].StartLine
	})
	return code, findings
}

var _ = Describe("Other scanners", func() {
	// planted: keys and strings of their shape with a bad checksum, which gitleaks cannot tell apart
	// (it has no checksum hook); near misses that match neither the pattern nor the rule.
	var planted, nearMisses string
	BeforeEach(func() {
		live, test := newKey(keys.Live), newKey(keys.Test)
		k8, err := keys.Generate("acme1234", keys.Live)
		Expect(err).NotTo(HaveOccurred())
		planted = "API_KEY=" + live + "\n" + "token: " + test + "\n" + "url: https://x/?k=" + k8.Plaintext() + "&y=1\n" + "fixture: " + brokenKey(live) + "\n"
		body := live[len("ks_live_"):]
		nearMisses = strings.Join([]string{
			"k_live_" + body,                         // prefix too short
			"abcdefghi_live_" + body,                 // prefix too long
			"ks_prod_" + body,                        // no such environment
			"ks_live_" + body[:35],                   // body one short
			"ks_live_" + body + "a",                  // body one long
			"X_" + live,                              // no word boundary before it
			live + "_suffix",                         // none after it
			"ks_live_" + body[:30] + "_" + body[31:], // an underscore inside the body
		}, "\n") + "\n"
	})

	It("gitleaks finds exactly the planted key shapes with config/scanners/gitleaks.toml, redacted, in a directory and in git history", func() {
		dir := GinkgoT().TempDir()
		writeFile(filepath.Join(dir, "leak.env"), planted)
		writeFile(filepath.Join(dir, "near.txt"), nearMisses)
		code, fs := gitleaks("dir", dir)
		Expect(code).To(Equal(1), "gitleaks exits 1 when it finds leaks")
		var got []string
		for _, f := range fs {
			Expect(f.RuleID).To(Equal("keysmith-api-key"))
			Expect(f.Secret).To(Equal("REDACTED"))
			got = append(got, filepath.Base(f.File)+":"+itoa(f.StartLine))
		}
		Expect(got).To(Equal([]string{"leak.env:1", "leak.env:2", "leak.env:3", "leak.env:4"}),
			"the 3 keys and the string with a bad checksum, which the rule cannot tell from a key; no near miss")

		// kubectl apikey scan tells them apart.
		r := apikey(dir, "", "scan", "--offline", "--format", "json", ".")
		rep := parse(r)
		Expect(rep.states()).To(HaveLen(1))
		n := map[string]int{}
		for _, f := range rep.Findings {
			n[f.State]++
		}
		Expect(n).To(Equal(map[string]int{"unchecked": 3, "not-a-key": 1}))

		// git history: a key committed, then deleted.
		repo := GinkgoT().TempDir()
		git(repo, "init", "-q")
		writeFile(filepath.Join(repo, "config", "leak.env"), planted)
		writeFile(filepath.Join(repo, "README.md"), "# nothing\n"+nearMisses)
		git(repo, "add", ".")
		git(repo, "commit", "-q", "-m", "leak")
		added := git(repo, "rev-parse", "HEAD")
		git(repo, "rm", "-q", "config/leak.env")
		git(repo, "commit", "-q", "-m", "remove")
		code, fs = gitleaks("git", repo)
		Expect(code).To(Equal(1))
		got = nil
		for _, f := range fs {
			Expect(f.RuleID).To(Equal("keysmith-api-key"))
			Expect(f.Commit).To(Equal(added))
			got = append(got, f.File+":"+itoa(f.StartLine))
		}
		Expect(got).To(Equal([]string{"config/leak.env:1", "config/leak.env:2", "config/leak.env:3", "config/leak.env:4"}))
	})

	It("runs the pre-commit hook of .pre-commit-hooks.yaml on staged files and refuses a commit with a key", func() {
		b, err := os.ReadFile(filepath.Join(moduleRoot(), ".pre-commit-hooks.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var hooks []struct {
			ID            string   `json:"id"`
			Entry         string   `json:"entry"`
			Language      string   `json:"language"`
			PassFilenames *bool    `json:"pass_filenames"`
			Types         []string `json:"types"`
		}
		Expect(yaml.Unmarshal(b, &hooks)).To(Succeed())
		Expect(hooks).To(HaveLen(1))
		hook := hooks[0]
		Expect(hook.ID).To(Equal("kubectl-apikey-scan"))
		Expect(hook.Language).To(Equal("system"))
		Expect(hook.PassFilenames).NotTo(BeNil())
		Expect(*hook.PassFilenames).To(BeTrue())
		entry := strings.Fields(hook.Entry)
		Expect(entry[0]).To(Equal("kubectl-apikey"))
		Expect(entry).To(ContainElement("--offline"))
		Expect(entry[len(entry)-1]).To(Equal("--"), "the file names pre-commit appends come after --")

		repo := GinkgoT().TempDir()
		git(repo, "init", "-q")
		writeFile(filepath.Join(repo, "README.md"), "# app\n")
		writeFile(filepath.Join(repo, "deploy", "secrets.env"), planted)
		writeFile(filepath.Join(repo, "unstaged.env"), planted)
		// pre-commit runs the entry with the staged files appended, as here (from the repository's top level).
		run := func(stdin string) result {
			git(repo, "add", "README.md")
			names := strings.Split(strings.TrimSuffix(git(repo, "diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"), "\x00"), "\x00")
			return apikey(repo, stdin, append(slices.Clone(entry[1:]), names...)...)
		}
		r := run("")
		Expect(r.code).To(Equal(0), "README.md holds no key")
		git(repo, "add", "deploy/secrets.env")
		r = run("")
		Expect(r.code).To(Equal(1), "a staged key refuses the commit")
		Expect(r.stdout).To(ContainSubstring("deploy/secrets.env:1:9"))
		Expect(r.stdout).NotTo(ContainSubstring("unstaged.env"))
		Expect(r.stdout).To(ContainSubstring("3 keys not looked up (--offline), possibly live, 1 not a key"))

		// Files named "-" and "--x" are files: not standard input (which holds another key), not a flag.
		git(repo, "rm", "-q", "--cached", "deploy/secrets.env")
		dash, flag := newKey(keys.Live), newKey(keys.Live)
		writeFile(filepath.Join(repo, "-"), "KEY="+dash+"\n")
		writeFile(filepath.Join(repo, "--x"), "KEY="+flag+"\n")
		git(repo, "add", "--", "-", "--x")
		r = run("piped " + newKey(keys.Live) + "\n")
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(ContainSubstring("--x:1:5"))
		Expect(r.stdout).To(ContainSubstring("./-:1:5"))
		Expect(r.stdout).To(ContainSubstring(keys.ID(dash)))
		Expect(r.stdout).To(ContainSubstring(keys.ID(flag)))
		Expect(r.stdout).To(ContainSubstring("2 keys not looked up (--offline), possibly live; 3 files"))
	})
})

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
