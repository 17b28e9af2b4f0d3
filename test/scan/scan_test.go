package scan

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/scan/sariftest"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

// report is the part of `scan --format json` the specs read.
type report struct {
	Findings []struct {
		Path     string `json:"path"`
		Commit   string `json:"commit"`
		Line     int    `json:"line"`
		Column   int    `json:"column"`
		Key      string `json:"key"`
		ID       string `json:"id"`
		Checksum string `json:"checksum"`
		State    string `json:"state"`
		ApiKey   *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"apiKey"`
		Revoked bool `json:"revokedByThisScan"`
	} `json:"findings"`
	Lookup struct {
		Mode      string `json:"mode"`
		Namespace string `json:"namespace"`
		ApiKeys   int    `json:"apiKeys"`
	} `json:"lookup"`
	Summary struct {
		Files         int `json:"files"`
		BinarySkipped int `json:"binarySkipped"`
		Blobs         int `json:"blobs"`
		Live          int `json:"live"`
	} `json:"summary"`
	Revocations []struct {
		ApiKey struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"apiKey"`
		KeyIDs         []string `json:"keyIDs"`
		Refused        bool     `json:"refused"`
		RefusedMessage string   `json:"refusedMessage"`
		Recorded       bool     `json:"recorded"`
		Message        string   `json:"message"`
		Warning        string   `json:"warning"`
		Error          string   `json:"error"`
	} `json:"revocations"`
	Warnings []string `json:"warnings"`
}

func parse(r result) report {
	GinkgoHelper()
	var rep report
	Expect(json.Unmarshal([]byte(r.stdout), &rep)).To(Succeed(), "stdout is not the JSON report")
	return rep
}

// states maps each finding's path (base name) to "state apiKey".
func (r report) states() map[string]string {
	m := map[string]string{}
	for _, f := range r.Findings {
		s := f.State
		if f.ApiKey != nil {
			s += " " + f.ApiKey.Namespace + "/" + f.ApiKey.Name
		}
		m[filepath.Base(f.Path)] = s
	}
	return m
}

var _ = Describe("kubectl apikey scan", Ordered, func() {
	var (
		dir                                         string
		active, retiring, revoked, team, unknownKey string
	)
	BeforeAll(func() {
		// billing: its first key rotated (Retiring, within the overlap), the second Active; old: its
		// key revoked; orders in the team's namespace.
		retiring = issue(otherNS, "billing")
		annotate(otherNS, "billing", v1alpha1.AnnotationRotate, "1")
		active = currentKey(otherNS, "billing", keys.ID(retiring))
		Expect(keyState(otherNS, "billing", keys.ID(retiring))).To(Equal(v1alpha1.KeyRetiring))
		revoked = issue(otherNS, "old")
		annotate(otherNS, "old", v1alpha1.AnnotationRevoke, keys.ID(revoked))
		Eventually(func() v1alpha1.KeyState { return keyState(otherNS, "old", keys.ID(revoked)) }, eventually, poll).Should(Equal(v1alpha1.KeyRevoked))
		team = issue(teamNS, "orders")
		unknownKey = newKey(keys.Live)

		dir = GinkgoT().TempDir()
		writeFile(filepath.Join(dir, "deploy", "prod.env"), "DB=postgres://db\nAPI_KEY="+active+"\n")
		writeFile(filepath.Join(dir, "deploy", "values.yaml"), "billing:\n  previousKey: \""+retiring+"\"\n")
		writeFile(filepath.Join(dir, "notes", "incident.md"), "# incident\n\nthe old key was `"+revoked+"`\n")
		writeFile(filepath.Join(dir, "notes", "orders.txt"), "orders key: "+team+"\n")
		writeFile(filepath.Join(dir, "logs", "other-cluster.log"), "level=info key="+unknownKey+"\n")
		writeFile(filepath.Join(dir, "test", "fixture.go"), "var fake = \""+brokenKey(active)+"\"\n")
	})

	It("classifies every key found: Active, Retiring, Revoked, unknown and not a key, with its ApiKey (exit 1)", func() {
		r := apikey(dir, "", "--kubeconfig", clusterUser, "scan", "--format", "json", ".")
		Expect(r.code).To(Equal(1), "a live key was found")
		rep := parse(r)
		Expect(rep.states()).To(Equal(map[string]string{
			"prod.env":          "Active " + otherNS + "/billing",
			"values.yaml":       "Retiring " + otherNS + "/billing",
			"incident.md":       "Revoked " + otherNS + "/old",
			"orders.txt":        "Active " + teamNS + "/orders",
			"other-cluster.log": "unknown",
			"fixture.go":        "not-a-key",
		}))
		Expect(rep.Lookup.Mode).To(Equal("all-namespaces"))
		Expect(rep.Summary.Live).To(Equal(3))
		for _, f := range rep.Findings {
			Expect(f.Key).To(HaveSuffix("…"))
			Expect(len(f.Key)).To(BeNumerically("<", 20), "the key is shown redacted")
			if f.Checksum == "valid" {
				Expect(f.ID).To(MatchRegexp(`^[0-9a-f]{12}$`))
			} else {
				Expect(f.ID).To(BeEmpty())
			}
			if filepath.Base(f.Path) == "prod.env" {
				Expect(f.ID).To(Equal(keys.ID(active)))
				Expect([]int{f.Line, f.Column}).To(Equal([]int{2, 9}))
				Expect(f.Path).To(Equal(filepath.Join("deploy", "prod.env")))
			}
		}

		text := apikey(dir, "", "--kubeconfig", clusterUser, "scan", ".")
		Expect(text.code).To(Equal(1))
		Expect(text.stdout).To(ContainSubstring("deploy/prod.env:2:9"))
		Expect(text.stdout).To(MatchRegexp(`3 live keys \(2 Active, 1 Retiring\), 1 revoked, 1 unknown, 1 not a key \(bad checksum\); 6 files`))
		Expect(text.stdout).To(ContainSubstring("looked up in"))
		Expect(text.stdout).To(ContainSubstring(keys.ID(active)))
	})

	It("writes SARIF 2.1.0 with one result per key found and a rule per state", func() {
		r := apikey(dir, "", "--kubeconfig", clusterUser, "scan", "--format", "sarif", ".")
		Expect(r.code).To(Equal(1))
		rules, err := sariftest.Validate([]byte(r.stdout))
		Expect(err).NotTo(HaveOccurred())
		Expect(rules).To(ConsistOf("keysmith/live-key", "keysmith/retiring-key", "keysmith/revoked-key", "keysmith/live-key",
			"keysmith/unknown-key", "keysmith/not-a-key"))
		var log struct {
			Runs []struct {
				Results []struct {
					RuleID    string `json:"ruleId"`
					Locations []struct {
						PhysicalLocation struct {
							ArtifactLocation struct {
								URI string `json:"uri"`
							} `json:"artifactLocation"`
							Region struct {
								StartLine   int `json:"startLine"`
								StartColumn int `json:"startColumn"`
							} `json:"region"`
						} `json:"physicalLocation"`
					} `json:"locations"`
				} `json:"results"`
			} `json:"runs"`
		}
		Expect(json.Unmarshal([]byte(r.stdout), &log)).To(Succeed())
		var uris []string
		for _, res := range log.Runs[0].Results {
			l := res.Locations[0].PhysicalLocation
			uris = append(uris, l.ArtifactLocation.URI)
			if l.ArtifactLocation.URI == "deploy/prod.env" {
				Expect(res.RuleID).To(Equal("keysmith/live-key"))
				Expect([]int{l.Region.StartLine, l.Region.StartColumn}).To(Equal([]int{2, 9}))
			}
		}
		Expect(uris).To(ContainElements("deploy/prod.env", "deploy/values.yaml", "notes/incident.md", "logs/other-cluster.log", "test/fixture.go"))
	})

	It("exits 0 when no live key is found, and 2 on an error", func() {
		r := apikey(dir, "", "--kubeconfig", clusterUser, "scan", "notes/incident.md", "logs", "test")
		Expect(r.code).To(Equal(0), "revoked, unknown and not-a-key only")
		Expect(r.stdout).To(ContainSubstring("1 revoked, 1 unknown, 1 not a key"))

		r = apikey(dir, "", "--kubeconfig", clusterUser, "scan", "no-such-dir")
		Expect(r.code).To(Equal(2))
		r = apikey(dir, "", "--kubeconfig", nobody, "scan", "deploy")
		Expect(r.code).To(Equal(2), "a user who may list no ApiKeys")
		Expect(r.stderr).To(ContainSubstring("forbidden"))
		Expect(r.stderr).To(ContainSubstring("--offline"))
		r = apikey(dir, "", "--kubeconfig", filepath.Join(dir, "no-kubeconfig"), "scan", "deploy")
		Expect(r.code).To(Equal(2), "no cluster")
		r = apikey(dir, "", "--kubeconfig", clusterUser, "scan", "--format", "yaml", "deploy")
		Expect(r.code).To(Equal(2))
	})

	It("checks format and checksum only with --offline, without any cluster", func() {
		r := apikey(dir, "", "--kubeconfig", filepath.Join(dir, "no-kubeconfig"), "--server", "https://127.0.0.1:1", "scan", "--offline", "--format", "json", ".")
		Expect(r.code).To(Equal(1), "a key whose checksum holds may be live")
		rep := parse(r)
		Expect(rep.Lookup.Mode).To(Equal("offline"))
		Expect(rep.states()).To(HaveKeyWithValue("prod.env", "unchecked"))
		Expect(rep.states()).To(HaveKeyWithValue("fixture.go", "not-a-key"))
		r = apikey(dir, "", "scan", "--offline", "test")
		Expect(r.code).To(Equal(0), "a bad checksum only")
	})

	It("reads standard input, so that logs can be piped", func() {
		logs := "2026-12-01T10:00:00Z INFO request\n2026-12-01T10:00:01Z DEBUG auth header Bearer " + active + "\n"
		r := apikey(dir, logs, "--kubeconfig", clusterUser, "scan", "--format", "json", "-")
		Expect(r.code).To(Equal(1))
		rep := parse(r)
		Expect(rep.Findings).To(HaveLen(1))
		Expect(rep.Findings[0].Path).To(Equal("-"))
		Expect(rep.Findings[0].Line).To(Equal(2))
		Expect(rep.Findings[0].State).To(Equal("Active"))
	})

	It("looks keys up in the user's namespace when they may not list every namespace, and says so", func() {
		r := apikey(dir, "", "--kubeconfig", teamUser, "scan", "--format", "json", ".")
		Expect(r.code).To(Equal(1), "the team's own key is live")
		Expect(r.stderr).To(ContainSubstring("you may not list ApiKeys in every namespace: keys were looked up in namespace " + teamNS + " only"))
		rep := parse(r)
		Expect(rep.Lookup.Mode).To(Equal("namespace"))
		Expect(rep.Lookup.Namespace).To(Equal(teamNS))
		Expect(rep.states()).To(HaveKeyWithValue("orders.txt", "Active "+teamNS+"/orders"))
		Expect(rep.states()).To(HaveKeyWithValue("prod.env", "unknown"), "another namespace's key is unknown to them")

		// -n names the namespace: no cluster-wide listing is tried, nothing to say.
		r = apikey(dir, "", "--kubeconfig", teamUser, "-n", teamNS, "scan", "notes/orders.txt")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(BeEmpty())
		Expect(r.stdout).To(ContainSubstring("looked up in 1 ApiKey of namespace " + teamNS))
		// A namespace they may not list: an error.
		r = apikey(dir, "", "--kubeconfig", teamUser, "-n", otherNS, "scan", "notes/orders.txt")
		Expect(r.code).To(Equal(2))
	})

	It("revokes every live key found with --revoke, waits for keysmith's record, and the verifier refuses them", func() {
		leaked := issue(teamNS, "leaky")
		previous := newKey(keys.Live)
		cl := &http.Client{}
		Eventually(func() testenv.Verdict { return testenv.VerifyKey(cl, verifierURL, leaked) }, eventually, poll).Should(Equal(testenv.Accepted))
		leak := GinkgoT().TempDir()
		writeFile(filepath.Join(leak, "ticket-4711.txt"), "customer pasted: "+leaked+"\nand an unrelated one "+previous+"\n")

		r := apikey(leak, "", "--kubeconfig", teamUser, "scan", "--revoke", "--format", "json", ".")
		Expect(r.code).To(Equal(1), "a live key was found (and revoked)")
		rep := parse(r)
		Expect(rep.Revocations).To(HaveLen(1))
		rev := rep.Revocations[0]
		Expect(rev.ApiKey.Namespace + "/" + rev.ApiKey.Name).To(Equal(teamNS + "/leaky"))
		Expect(rev.KeyIDs).To(Equal([]string{keys.ID(leaked)}))
		Expect(rev.Refused).To(BeTrue(), "the API server holds the annotation naming the key")
		// What the read-back found: the annotation, or keysmith's record when keysmith was quicker.
		Expect(rev.RefusedMessage).To(BeElementOf(
			"every verifier refuses key "+keys.ID(leaked)+" from its next request on (the API server holds keysmith.dev/revoke naming it)",
			"every verifier refuses key "+keys.ID(leaked)+" from its next request on (the API server holds status listing it as no longer valid)"))
		Expect(rev.Recorded).To(BeTrue(), "keysmith recorded it")
		Expect(rev.Warning).To(BeEmpty())
		Expect(rev.Message).To(ContainSubstring("revoked: key " + keys.ID(leaked) + " revoked (Manual)"))
		Expect(rep.states()).To(HaveKeyWithValue("ticket-4711.txt", Not(BeEmpty())))
		for _, f := range rep.Findings {
			Expect(f.Revoked).To(Equal(f.ID == keys.ID(leaked)))
		}
		Expect(r.stderr).To(ContainSubstring("revoking key " + keys.ID(leaked) + " of ApiKey " + teamNS + "/leaky"))

		// keysmith recorded it, the verifier refuses it, and keysmith issued a fresh key.
		Expect(keyState(teamNS, "leaky", keys.ID(leaked))).To(Equal(v1alpha1.KeyRevoked))
		Expect(testenv.VerifyKey(cl, verifierURL, leaked)).To(Equal(testenv.Refused))
		fresh := currentKey(teamNS, "leaky", keys.ID(leaked))
		Expect(testenv.VerifyKey(cl, verifierURL, fresh)).To(Equal(testenv.Accepted))

		// Scanned again: revoked, exit 0.
		r = apikey(leak, "", "--kubeconfig", teamUser, "scan", "--revoke", ".")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(ContainSubstring("1 revoked, 1 unknown"))

		// In text: the finding says so, and a line under the table says what keysmith recorded.
		second := issue(teamNS, "leaky-2")
		writeFile(filepath.Join(leak, "chat.log"), "12:01 <dev> try "+second+"\n")
		r = apikey(leak, "", "--kubeconfig", teamUser, "scan", "--revoke", "chat.log")
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(MatchRegexp(`chat.log:1:17 +\S+ +` + keys.ID(second) + ` +Active +` + teamNS + `/leaky-2 +revoked by this scan`))
		Expect(r.stdout).To(MatchRegexp(regexp.QuoteMeta("ApiKey "+teamNS+"/leaky-2: every verifier refuses key "+keys.ID(second)+" from its next request on (the API server holds ") +
			`(?:keysmith\.dev/revoke naming it|status listing it as no longer valid)\) \(read back from the API server (?:after |at once)`))
		Expect(r.stdout).To(ContainSubstring("ApiKey " + teamNS + "/leaky-2: keysmith recorded it after "))
		Expect(r.stdout).To(ContainSubstring(": revoked: key " + keys.ID(second) + " revoked (Manual); a fresh key "))
		Expect(testenv.VerifyKey(cl, verifierURL, second)).To(Equal(testenv.Refused))
	})

	It("finds with --git a key deleted in a later commit, naming the commit that added it", func() {
		repo := GinkgoT().TempDir()
		git(repo, "init", "-q")
		writeFile(filepath.Join(repo, "config", "prod.env"), "API_KEY="+active+"\n")
		writeFile(filepath.Join(repo, "main.go"), "package main\n")
		git(repo, "add", ".")
		git(repo, "commit", "-q", "-m", "config")
		added := git(repo, "rev-parse", "HEAD")
		git(repo, "rm", "-q", "config/prod.env")
		git(repo, "commit", "-q", "-m", "remove the key")

		r := apikey(repo, "", "--kubeconfig", clusterUser, "scan", ".")
		Expect(r.code).To(Equal(0), "the work tree holds no key")
		Expect(r.stdout).To(HavePrefix("no keys found"))

		r = apikey(repo, "", "--kubeconfig", clusterUser, "scan", "--git", "--format", "json", ".")
		Expect(r.code).To(Equal(1))
		rep := parse(r)
		Expect(rep.Findings).To(HaveLen(1))
		f := rep.Findings[0]
		Expect(f.Commit).To(Equal(added))
		Expect(f.Path).To(Equal(filepath.Join("config", "prod.env")))
		Expect([]int{f.Line, f.Column}).To(Equal([]int{1, 9}))
		Expect(f.State).To(Equal("Active"))
		Expect(rep.Summary.Blobs).To(BeNumerically(">=", 2))

		text := apikey(repo, "", "--kubeconfig", clusterUser, "scan", "--git", ".")
		Expect(text.stdout).To(ContainSubstring(added[:12] + ":config/prod.env:1:9"))
	})

	It("finds with --git a key deleted in a later commit of a repository with annotated tags", func() {
		repo := GinkgoT().TempDir()
		git(repo, "init", "-q")
		writeFile(filepath.Join(repo, "main.go"), "package main\n")
		git(repo, "add", ".")
		git(repo, "commit", "-q", "-m", "first")
		notes := filepath.Join(GinkgoT().TempDir(), "notes")
		writeFile(notes, strings.Repeat("release notes, longer than a pipe holds\n", 3000))
		git(repo, "tag", "-a", "v1.0.0", "-F", notes)
		writeFile(filepath.Join(repo, "config", "prod.env"), "API_KEY="+active+"\n")
		git(repo, "add", ".")
		git(repo, "commit", "-q", "-m", "config")
		added := git(repo, "rev-parse", "HEAD")
		git(repo, "tag", "-a", "v1.1.0", "-m", "v1.1.0")
		git(repo, "rm", "-q", "config/prod.env")
		git(repo, "commit", "-q", "-m", "remove the key")
		git(repo, "tag", "-a", "v1.2.0", "-m", "v1.2.0")

		r := apikey(repo, "", "--kubeconfig", clusterUser, "scan", "--git", "--format", "json", ".")
		Expect(r.code).To(Equal(1), "the key in history is live")
		rep := parse(r)
		Expect(rep.Findings).To(HaveLen(1))
		Expect(rep.Findings[0].Commit).To(Equal(added))
		Expect(rep.Findings[0].Path).To(Equal(filepath.Join("config", "prod.env")))
		Expect(rep.Findings[0].State).To(Equal("Active"))

		// SARIF locates it from the repository's top, wherever the scan runs.
		writeFile(filepath.Join(repo, "deploy", "values.yaml"), "apiKey: "+active+"\n")
		r = apikey(filepath.Join(repo, "deploy"), "", "--kubeconfig", clusterUser, "scan", "--git", "--format", "sarif", ".")
		Expect(r.code).To(Equal(1))
		_, err := sariftest.Validate([]byte(r.stdout))
		Expect(err).NotTo(HaveOccurred())
		var log struct {
			Runs []struct {
				Bases map[string]struct {
					URI string `json:"uri"`
				} `json:"originalUriBaseIds"`
				ColumnKind string `json:"columnKind"`
				Results    []struct {
					Locations []struct {
						PhysicalLocation struct {
							ArtifactLocation struct {
								URI       string `json:"uri"`
								URIBaseID string `json:"uriBaseId"`
							} `json:"artifactLocation"`
						} `json:"physicalLocation"`
					} `json:"locations"`
				} `json:"results"`
			} `json:"runs"`
		}
		Expect(json.Unmarshal([]byte(r.stdout), &log)).To(Succeed())
		top, err := filepath.EvalSymlinks(repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(log.Runs[0].ColumnKind).To(Equal("utf16CodeUnits"))
		Expect(log.Runs[0].Bases).To(HaveKeyWithValue("%SRCROOT%", HaveField("URI", "file://"+top+"/")))
		var uris []string
		for _, res := range log.Runs[0].Results {
			l := res.Locations[0].PhysicalLocation.ArtifactLocation
			Expect(l.URIBaseID).To(Equal("%SRCROOT%"))
			uris = append(uris, l.URI)
		}
		Expect(uris).To(ConsistOf("deploy/values.yaml", "config/prod.env"))
	})

	It("skips binary files and the files git ignores", func() {
		repo := GinkgoT().TempDir()
		git(repo, "init", "-q")
		writeFile(filepath.Join(repo, ".gitignore"), "*.log\ndist/\n")
		writeFile(filepath.Join(repo, "app.log"), "key="+active+"\n")
		writeFile(filepath.Join(repo, "dist", "bundle.js"), "k='"+active+"'\n")
		writeFile(filepath.Join(repo, "image.png"), "\x89PNG\r\n\x1a\n\x00\x00"+active)
		writeFile(filepath.Join(repo, "src", "ok.go"), "package src\n")
		writeFile(filepath.Join(repo, "src", "untracked.txt"), revoked+"\n")

		r := apikey(repo, "", "--kubeconfig", clusterUser, "scan", "--format", "json", ".")
		Expect(r.code).To(Equal(0))
		rep := parse(r)
		Expect(rep.states()).To(Equal(map[string]string{"untracked.txt": "Revoked " + otherNS + "/old"}),
			"an untracked file that no ignore rule matches is scanned")
		Expect(rep.Summary.BinarySkipped).To(Equal(1))
		Expect(rep.Summary.Files).To(Equal(3), ".gitignore, ok.go, untracked.txt")

		// A file named on the command line is scanned although git ignores it; a binary one is not.
		r = apikey(repo, "", "--kubeconfig", clusterUser, "scan", "app.log", "image.png")
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(ContainSubstring("app.log:1:5"))
		Expect(r.stdout).To(ContainSubstring("1 binary skipped"))
		Expect(strings.Count(r.stdout, "Active")).To(Equal(2), "the row and the summary")

		// So is a directory named that git ignores; a path with no file to scan is warned of.
		Expect(os.MkdirAll(filepath.Join(repo, "empty"), 0o755)).To(Succeed())
		r = apikey(repo, "", "--kubeconfig", clusterUser, "scan", "dist", "empty")
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(ContainSubstring("dist/bundle.js:1:4"))
		Expect(r.stderr).To(ContainSubstring("warning: empty: git lists no file in it"))
	})

	// Last: it stops the manager.
	It("revokes with no operator running: every verifier refuses the key once the API server holds the annotation, and keysmith's missing record is a warning", func() {
		leaked := issue(teamNS, "leaky-no-operator")
		cl := &http.Client{}
		Eventually(func() testenv.Verdict { return testenv.VerifyKey(cl, standaloneURL, leaked) }, eventually, poll).Should(Equal(testenv.Accepted))
		Expect(stopManager()).To(Succeed())
		leak := GinkgoT().TempDir()
		writeFile(filepath.Join(leak, "paste.txt"), "here: "+leaked+"\n")

		r := apikey(leak, "", "--kubeconfig", teamUser, "scan", "--revoke", "--timeout", "3s", "--format", "json", ".")
		Expect(r.code).To(Equal(1), "a live key was found (and revoked); keysmith's missing record is no error")
		rep := parse(r)
		Expect(rep.Revocations).To(HaveLen(1))
		rev := rep.Revocations[0]
		Expect(rev.Refused).To(BeTrue())
		Expect(rev.Recorded).To(BeFalse())
		Expect(rev.Error).To(BeEmpty())
		Expect(rev.Warning).To(HavePrefix("keysmith has not recorded it yet: is the operator running? (status does not list key " + keys.ID(leaked) + " as revoked within 3s"))
		Expect(rep.Findings).To(HaveLen(1))
		Expect(rep.Findings[0].Revoked).To(BeTrue())
		Expect(r.stderr).To(ContainSubstring("ApiKey " + teamNS + "/leaky-no-operator: every verifier refuses key " + keys.ID(leaked) + " from its next request on"))
		Expect(r.stderr).To(ContainSubstring("warning: ApiKey " + teamNS + "/leaky-no-operator: keysmith has not recorded it yet"))
		Expect(testenv.VerifyKey(cl, standaloneURL, leaked)).To(Equal(testenv.Refused), "the standalone verifier refuses it without the operator")
		Expect(keyState(teamNS, "leaky-no-operator", keys.ID(leaked))).To(Equal(v1alpha1.KeyActive), "status still lists it: no operator recorded it")

		// Scanned again: its ApiKey names it in keysmith.dev/revoke, so it is refused, not live (exit 0).
		r = apikey(leak, "", "--kubeconfig", teamUser, "scan", ".")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(ContainSubstring("Revoked"))
		Expect(r.stdout).To(ContainSubstring("keysmith.dev/revoke names it and every verifier refuses it; keysmith has not recorded it yet"))
	})
})
