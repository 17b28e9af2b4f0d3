package main

import (
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/operator"
)

// The bare client writes ApiKeys of an identical kind in a group of its own: the same schema, the same
// CEL rules, the same objects, so the API server does the same work per write, but keysmith's manager
// does not watch them. The floor can then run right before keysmith for each N on the same control
// plane, with the same objects stored and cached, while the manager runs.
const floorGroup = "floor.bench.keysmith.dev"

// floorCRDs returns keysmith's CRDs plus the ApiKey CRD copied into floorGroup.
func floorCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crds, err := operator.CRDs()
	if err != nil {
		return nil, err
	}
	for _, crd := range crds {
		if crd.Spec.Names.Kind != "ApiKey" {
			continue
		}
		floor := crd.DeepCopy()
		floor.Spec.Group = floorGroup
		floor.Name = floor.Spec.Names.Plural + "." + floorGroup
		return append(crds, floor), nil
	}
	return nil, fmt.Errorf("no ApiKey CRD among keysmith's CRDs")
}

// floorScheme maps keysmith's ApiKey types to floorGroup (and has the Kubernetes types), for the bare
// client only.
func floorScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	gv := schema.GroupVersion{Group: floorGroup, Version: v1alpha1.GroupVersion.Version}
	s.AddKnownTypes(gv, &v1alpha1.ApiKey{}, &v1alpha1.ApiKeyList{})
	metav1.AddToGroupVersion(s, gv)
	return s
}
