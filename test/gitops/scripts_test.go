package gitops

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/config/argocd"
)

// actionClock is the instant os.date and os.time return in the action tests, so that their outputs are
// compared exactly (Argo CD's own tests blank such fields instead).
var actionClock = time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)

// scriptsDir is the ApiKey's directory in Argo CD's layout, resolved from the module root.
func scriptsDir() string {
	root, err := moduleRoot()
	if err != nil {
		panic(err)
	}
	return filepath.Join(root, "config", "argocd", filepath.FromSlash(argocd.ApiKeyDir))
}

func readScripts() argocd.Scripts {
	GinkgoHelper()
	s, err := argocd.Read(os.DirFS(scriptsDir()))
	Expect(err).NotTo(HaveOccurred())
	return s
}

var _ = Describe("Argo CD's runtime for argocd-cm scripts", func() {
	rt := Runtime{}
	obj := map[string]any{"metadata": map[string]any{"name": "x"}}

	It("has no string library: a script calling string.format fails", func() {
		_, err := rt.Health(obj, `return {status = string.format("%s", "Healthy")}`)
		Expect(err).To(MatchError(ContainSubstring("string")))
		_, err = rt.Health(obj, `local s = "Healthy"; return {status = s:lower()}`)
		Expect(err).To(HaveOccurred())
	})
	It("has no io, math or debug library, and no global os (only require(\"os\") with time and date)", func() {
		for _, script := range []string{`return io.open("/etc/passwd")`, `return {status = math.max(1, 2)}`,
			`return debug.traceback()`, `return {status = os.date("!%Y")}`, `return {status = require("os").getenv("HOME")}`} {
			_, err := rt.Health(obj, script)
			Expect(err).To(HaveOccurred(), script)
		}
		hs, err := Runtime{Now: func() time.Time { return actionClock }}.Health(obj,
			`local os = require("os"); return {status = "Healthy", message = os.date("!%Y-%m-%dT%H:%M:%SZ") .. " " .. tostring(os.time())}`)
		Expect(err).NotTo(HaveOccurred())
		Expect(hs).To(Equal(HealthStatus{Status: Healthy, Message: "2026-08-01T12:00:00Z 1785585600"}))
	})
	It("stops a script after one second", func() {
		start := time.Now()
		_, err := rt.Health(obj, `while true do end`)
		Expect(err).To(HaveOccurred())
		Expect(time.Since(start)).To(BeNumerically("<", 3*time.Second))
	})
	It("reads health as Argo CD does: an unknown status is Unknown, nil or {} an empty status, anything else an error", func() {
		Expect(rt.Health(obj, `return {status = "Fine"}`)).To(Equal(HealthStatus{Status: Unknown, Message: invalidHealthStatus}))
		Expect(rt.Health(obj, `return nil`)).To(Equal(HealthStatus{}))
		Expect(rt.Health(obj, `return {}`)).To(Equal(HealthStatus{}))
		_, err := rt.Health(obj, `return "Healthy"`)
		Expect(err).To(HaveOccurred())
		_, err = rt.Health(obj, `local t = {status = "Healthy"}; t[1] = 1; return t`)
		Expect(err).To(HaveOccurred(), "mixed keys cannot be encoded")
		Expect(rt.ResourceHealth(map[string]any{"metadata": map[string]any{"deletionTimestamp": "2026-08-01T12:00:00Z"}}, `return {status = "Healthy"}`)).
			To(Equal(HealthStatus{Status: Progressing, Message: "Pending deletion"}))
	})
	It("reads action output as Argo CD does: the modified obj, or a list of {resource, operation}", func() {
		live := map[string]any{"metadata": map[string]any{"name": "x", "labels": map[string]any{}}, "spec": map[string]any{"scopes": []any{"a:b"}}}
		out, err := rt.Action(live, `obj.spec.disabled = true; return obj`)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(HaveLen(1))
		Expect(out[0].Operation).To(Equal("patch"))
		Expect(out[0].Object["metadata"].(map[string]any)["labels"]).To(Equal(map[string]any{}), "an empty object stays an object")
		patch, err := MergePatch(live, out[0].Object)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(patch)).To(MatchJSON(`{"spec":{"disabled":true}}`))

		out, err = rt.Action(live, `return {{resource = obj, operation = "patch"}}`)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(HaveLen(1))
		Expect(MergePatch(live, out[0].Object)).To(BeNil())
		_, err = rt.Action(live, `return {{resource = obj, operation = "delete"}}`)
		Expect(err).To(HaveOccurred())
		_, err = rt.Action(live, `error("no key yet", 0)`)
		Expect(err).To(MatchError("no key yet"))
	})
	It("catches an action that writes anything but the annotations and spec.disabled", func() {
		live := map[string]any{"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"scopes": []any{"a:b"}}}
		for _, script := range []string{`obj.spec.scopes = {"admin:all"}; return obj`,
			`obj.metadata.labels = {team = "x"}; return obj`, `obj.status = {currentKeyID = "x"}; return obj`,
			`obj.metadata.annotations = {["keysmith.dev/rotate"] = "1", other = "y"}; return obj`} {
			out, err := rt.Action(live, script)
			Expect(err).NotTo(HaveOccurred())
			patch, err := MergePatch(live, out[0].Object)
			Expect(err).NotTo(HaveOccurred())
			Expect(CheckPatch(patch)).To(HaveOccurred(), script)
		}
	})
})

var _ = Describe("config/argocd: health.lua on every case of health_test.yaml", func() {
	dir := scriptsDir()
	var tests HealthTests
	loadErr := ReadYAML(filepath.Join(dir, "health_test.yaml"), &tests)
	It("reads health_test.yaml", func() {
		Expect(loadErr).NotTo(HaveOccurred())
		Expect(len(tests.Tests)).To(BeNumerically(">=", 20))
	})
	for _, tc := range tests.Tests {
		It(tc.InputPath+" is "+tc.HealthStatus.Status, func() {
			obj, err := ReadObject(filepath.Join(dir, tc.InputPath))
			Expect(err).NotTo(HaveOccurred())
			hs, err := Runtime{}.Health(obj, readScripts().Health)
			Expect(err).NotTo(HaveOccurred())
			Expect(hs).To(Equal(tc.HealthStatus))
		})
	}
	It("covers every file in testdata/", func() {
		files, err := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var listed []string
		for _, tc := range tests.Tests {
			listed = append(listed, filepath.Join(dir, tc.InputPath))
		}
		Expect(files).To(ConsistOf(listed))
	})
})

var _ = Describe("config/argocd: the actions on every case of action_test.yaml", func() {
	dir := filepath.Join(scriptsDir(), "actions")
	var tests ActionTests
	loadErr := ReadYAML(filepath.Join(dir, "action_test.yaml"), &tests)
	rt := Runtime{Now: func() time.Time { return actionClock }}
	It("reads action_test.yaml", func() {
		Expect(loadErr).NotTo(HaveOccurred())
		Expect(tests.DiscoveryTests).NotTo(BeEmpty())
		Expect(tests.ActionTests).NotTo(BeEmpty())
	})
	for _, tc := range tests.DiscoveryTests {
		It("discovery on "+tc.InputPath, func() {
			obj, err := ReadObject(filepath.Join(dir, tc.InputPath))
			Expect(err).NotTo(HaveOccurred())
			got, err := rt.Discover(obj, readScripts().Discovery)
			Expect(err).NotTo(HaveOccurred())
			want := append([]ResourceAction(nil), tc.Result...)
			sortActions(want)
			Expect(got).To(Equal(want))
		})
	}
	for _, tc := range tests.ActionTests {
		It(tc.Action+" on "+tc.InputPath, func() {
			s := readScripts()
			Expect(s.Actions).To(HaveKey(tc.Action))
			obj, err := ReadObject(filepath.Join(dir, tc.InputPath))
			Expect(err).NotTo(HaveOccurred())
			out, err := rt.Action(obj, s.Actions[tc.Action])
			if tc.ExpectedErrorMessage != "" {
				Expect(err).To(MatchError(tc.ExpectedErrorMessage))
				return
			}
			Expect(err).NotTo(HaveOccurred())
			Expect(out).To(HaveLen(1))
			Expect(out[0].Operation).To(Equal("patch"))
			want, err := ReadObject(filepath.Join(dir, tc.ExpectedOutputPath))
			Expect(err).NotTo(HaveOccurred())
			got, err := Normalize(out[0].Object)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
			patch, err := MergePatch(obj, out[0].Object)
			Expect(err).NotTo(HaveOccurred())
			Expect(patch).NotTo(BeNil(), "the action changes something")
			Expect(CheckPatch(patch)).To(Succeed())
		})
	}
	It("every action changes only the annotations or spec.disabled, on every test object", func() {
		s := readScripts()
		inputs, err := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		more, err := filepath.Glob(filepath.Join(scriptsDir(), "testdata", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		ran := 0
		for _, in := range append(inputs, more...) {
			for name, script := range s.Actions {
				obj, err := ReadObject(in)
				Expect(err).NotTo(HaveOccurred())
				out, err := rt.Action(obj, script)
				if err != nil {
					continue // refused (deleting, disabled, no key): changes nothing
				}
				orig, err := ReadObject(in)
				Expect(err).NotTo(HaveOccurred())
				patch, err := MergePatch(orig, out[0].Object)
				Expect(err).NotTo(HaveOccurred())
				Expect(CheckPatch(patch)).To(Succeed(), "%s on %s", name, filepath.Base(in))
				ran++
			}
		}
		Expect(ran).To(BeNumerically(">", 20))
	})
	It("defines an action for every action discovery offers, and no other", func() {
		s := readScripts()
		obj, err := ReadObject(filepath.Join(scriptsDir(), "testdata", "healthy_ready.yaml"))
		Expect(err).NotTo(HaveOccurred())
		offered, err := rt.Discover(obj, s.Discovery)
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, a := range offered {
			names = append(names, a.Name)
		}
		Expect(names).To(ConsistOf("disable", "enable", "revoke", "rotate"))
		Expect(s.Actions).To(HaveLen(len(names)))
		for _, n := range names {
			Expect(s.Actions).To(HaveKey(n))
		}
	})
})

var _ = Describe("config/argocd: the kustomize Component", func() {
	It("argocd-cm.yaml holds exactly the .lua files (generated by hack/argocd-gen, not stale)", func() {
		root, err := moduleRoot()
		Expect(err).NotTo(HaveOccurred())
		b, err := os.ReadFile(filepath.Join(root, "config", "argocd", argocd.PatchFile))
		Expect(err).NotTo(HaveOccurred())
		var cm argocd.ConfigMap
		Expect(yaml.UnmarshalStrict(b, &cm)).To(Succeed())
		Expect(cm.Kind).To(Equal("ConfigMap"))
		Expect(cm.Metadata.Name).To(Equal("argocd-cm"))
		Expect(cm.Data).To(HaveLen(2))
		back, err := argocd.Parse(cm.Data)
		Expect(err).NotTo(HaveOccurred())
		Expect(back).To(Equal(readScripts()), "run 'go run ./hack/argocd-gen'")
	})
	It("kustomize build of an Argo CD overlay that uses it adds both keys to argocd-cm and keeps the others", func() {
		root, err := moduleRoot()
		Expect(err).NotTo(HaveOccurred())
		goBin, err := exec.LookPath("go")
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.Command(goBin, "tool", "-modfile=hack/tools/go.mod", "kustomize", "build", "test/gitops/testdata/argocd-overlay")
		cmd.Dir = root
		out, err := cmd.Output()
		Expect(err).NotTo(HaveOccurred(), "%s", errOutput(err))
		var cm struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		}
		docs := strings.Split(string(out), "\n---\n")
		found := 0
		for _, d := range docs {
			Expect(yaml.Unmarshal([]byte(d), &cm)).To(Succeed())
			if cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
				continue
			}
			found++
			Expect(cm.Metadata.Namespace).To(Equal("argocd"))
			Expect(cm.Data).To(HaveKeyWithValue("exec.enabled", "false"), "the overlay's own keys stay")
			back, err := argocd.Parse(cm.Data)
			Expect(err).NotTo(HaveOccurred())
			Expect(back).To(Equal(readScripts()))
		}
		Expect(found).To(Equal(1))
	})
})

func errOutput(err error) string {
	if e, ok := err.(*exec.ExitError); ok {
		return string(e.Stderr)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// prettyJSON is for failure messages.
func prettyJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
