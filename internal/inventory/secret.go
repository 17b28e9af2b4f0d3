package inventory

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// SecretInfo describes an ApiKey's Secret without its values: which data keys it holds and how long each
// value is, as `kubectl describe secret` does.
type SecretInfo struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
	// Error is why the Secret could not be read (forbidden), "" when it was.
	Error string `json:"error,omitempty"`
	Type  string `json:"type,omitempty"`
	// ManagedByKeysmith: labelled app.kubernetes.io/managed-by=keysmith; Owner names the ApiKey of its
	// controller owner reference, if any.
	ManagedByKeysmith bool        `json:"managedByKeysmith,omitempty"`
	Owner             string      `json:"owner,omitempty"`
	Data              []DataEntry `json:"data,omitempty"`
}

// DataEntry is one data key of a Secret and the length of its value in bytes.
type DataEntry struct {
	Key    string `json:"key"`
	Length int    `json:"length"`
}

// SummarizeSecret returns what may be shown of s (nil: it does not exist) and then zeroes s's values, so
// that they are not kept in memory longer than the read. Values are never copied.
func SummarizeSecret(name string, s *corev1.Secret) SecretInfo {
	info := SecretInfo{Name: name}
	if s == nil {
		return info
	}
	info.Exists, info.Type = true, string(s.Type)
	info.ManagedByKeysmith = s.Labels[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue
	if ref := metav1.GetControllerOf(s); ref != nil && ref.Kind == "ApiKey" {
		info.Owner = ref.Name
	}
	for k, v := range s.Data {
		info.Data = append(info.Data, DataEntry{Key: k, Length: len(v)})
		clear(v)
	}
	for k, v := range s.StringData {
		info.Data = append(info.Data, DataEntry{Key: k, Length: len(v)})
	}
	s.Data, s.StringData = nil, nil
	slices.SortFunc(info.Data, func(a, b DataEntry) int { return cmp.Compare(a.Key, b.Key) })
	return info
}
