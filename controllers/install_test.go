package controllers_test

import (
	"bytes"
	"context"
	"io"
	"os/exec"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

var _ = Describe("Install manifests", func() {
	It("config/default builds with kustomize and is accepted by the API server", func() {
		cmd := exec.Command("go", "tool", "-modfile=../hack/tools/go.mod", "kustomize", "build", "../config/default")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		Expect(err).NotTo(HaveOccurred(), stderr.String())

		ctx := context.Background()
		r := utilyaml.NewYAMLReader(bufioReader(out))
		kinds := map[string]int{}
		for {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(doc, &u.Object)).To(Succeed())
			if u.Object == nil {
				continue
			}
			kinds[u.GetKind()]++
			opts := []client.PatchOption{client.FieldOwner("install-test"), client.ForceOwnership}
			if u.GetKind() != "Namespace" { // namespaced objects need their namespace to exist, even in a dry run
				opts = append(opts, client.DryRunAll)
			}
			Expect(k8s.Patch(ctx, u, client.Apply, opts...)).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
		}
		Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
		Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 2))
		Expect(kinds).To(HaveKey("ClusterRole"))
	})

	It("the manager Deployment is hardened", func() {
		var d map[string]any
		b, err := exec.Command("go", "tool", "-modfile=../hack/tools/go.mod", "kustomize", "build", "../config/manager").Output()
		Expect(err).NotTo(HaveOccurred())
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var m map[string]any
			Expect(yaml.Unmarshal(doc, &m)).To(Succeed())
			if m["kind"] == "Deployment" {
				d = m
			}
		}
		Expect(d).NotTo(BeNil())
		pod := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		Expect(pod["securityContext"]).To(HaveKeyWithValue("runAsNonRoot", true))
		Expect(pod["securityContext"]).To(HaveKeyWithValue("seccompProfile", HaveKeyWithValue("type", "RuntimeDefault")))
		c := pod["containers"].([]any)[0].(map[string]any)
		Expect(c["securityContext"]).To(HaveKeyWithValue("readOnlyRootFilesystem", true))
		Expect(c["securityContext"]).To(HaveKeyWithValue("allowPrivilegeEscalation", false))
		Expect(c["securityContext"]).To(HaveKeyWithValue("capabilities", HaveKeyWithValue("drop", ContainElement("ALL"))))
		Expect(c).To(HaveKey("livenessProbe"))
		Expect(c).To(HaveKey("readinessProbe"))
		Expect(c["resources"]).To(And(HaveKey("requests"), HaveKey("limits")))
	})
})
