package operator

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/config"
)

// CRDs returns keysmith's CustomResourceDefinitions as generated into config/crd/bases.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	docs, err := readYAML(config.CRDs, "crd/bases")
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(docs))
	for _, d := range docs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(d, crd); err != nil {
			return nil, fmt.Errorf("decoding CRD: %w", err)
		}
		out = append(out, crd)
	}
	return out, nil
}

// Samples returns the objects in fsys/dir (every *.yaml but kustomization.yaml).
func Samples(fsys fs.FS, dir string) ([]*unstructured.Unstructured, error) {
	docs, err := readYAML(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(d, &u.Object); err != nil {
			return nil, err
		}
		if u.GetKind() == "" || u.GetKind() == "Kustomization" {
			continue
		}
		out = append(out, u)
	}
	return out, nil
}

func readYAML(fsys fs.FS, dir string) ([][]byte, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".yaml" || e.Name() == "kustomization.yaml" {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufioReader(b))
		for {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			if len(bytes.TrimSpace(doc)) > 0 {
				docs = append(docs, doc)
			}
		}
	}
	return docs, nil
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
