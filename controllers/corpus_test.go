package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// The corpus in test/testdata: every manifest under invalid/ starts with "# expect: <message>" (refused
// at creation) or "# expect-on-update: <message>" (two documents: the second, applied over the first, is
// refused); every manifest under valid/ must be accepted. All go to the real API server, with strict
// field validation as kubectl uses.
const corpus = "../test/testdata"

func corpusFiles(dir string) []string {
	files, err := filepath.Glob(filepath.Join(corpus, dir, "*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	return files
}

func decodeDocs(b []byte) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(string(b), "\n---\n") {
		u := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
		if u.Object != nil {
			out = append(out, u)
		}
	}
	return out
}

var _ = Describe("Admission corpus (test/testdata)", Ordered, func() {
	ctx := context.Background()
	strict := client.FieldValidation("Strict")

	BeforeAll(func() {
		err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "corpus"}})
		Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
	})

	It("has at least 40 invalid and a set of valid manifests", func() {
		Expect(len(corpusFiles("invalid"))).To(BeNumerically(">=", 40))
		Expect(len(corpusFiles("valid"))).To(BeNumerically(">=", 8))
		GinkgoWriter.Printf("corpus: %d invalid, %d valid manifests\n", len(corpusFiles("invalid")), len(corpusFiles("valid")))
	})

	It("refuses every invalid manifest with its message", func() {
		for _, f := range corpusFiles("invalid") {
			b, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			first, _, _ := strings.Cut(string(b), "\n")
			docs := decodeDocs(b)
			name := filepath.Base(f)
			switch {
			case strings.HasPrefix(first, "# expect: "):
				want := strings.TrimPrefix(first, "# expect: ")
				Expect(docs).To(HaveLen(1), name)
				err := k8s.Create(ctx, docs[0], client.DryRunAll, strict)
				Expect(err).To(HaveOccurred(), "%s was accepted", name)
				Expect(err.Error()).To(ContainSubstring(want), name)
			case strings.HasPrefix(first, "# expect-on-update: "):
				want := strings.TrimPrefix(first, "# expect-on-update: ")
				Expect(docs).To(HaveLen(2), name)
				Expect(k8s.Create(ctx, docs[0], strict)).To(Succeed(), name)
				// keysmith adds its finalizer and status meanwhile: retry on conflicts with the newest version.
				var err error
				for range 20 {
					cur := &unstructured.Unstructured{}
					cur.SetGroupVersionKind(docs[0].GroupVersionKind())
					Expect(k8s.Get(ctx, client.ObjectKeyFromObject(docs[0]), cur)).To(Succeed())
					docs[1].SetResourceVersion(cur.GetResourceVersion())
					if err = k8s.Update(ctx, docs[1], client.DryRunAll, strict); !apierrors.IsConflict(err) {
						break
					}
				}
				Expect(err).To(HaveOccurred(), "%s: the update was accepted", name)
				Expect(err.Error()).To(ContainSubstring(want), name)
			default:
				Fail(name + " has no '# expect:' or '# expect-on-update:' header")
			}
		}
	})

	It("accepts every valid manifest", func() {
		for _, f := range corpusFiles("valid") {
			b, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, u := range decodeDocs(b) {
				Expect(k8s.Create(ctx, u, client.DryRunAll, strict)).To(Succeed(), filepath.Base(f))
			}
		}
	})
})
