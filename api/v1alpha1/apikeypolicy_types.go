package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Enforcement says what happens to ApiKeys that break a policy.
// +kubebuilder:validation:Enum=Block;Revoke
type Enforcement string

const (
	// EnforcementBlock: violating ApiKeys get no new key and no rotation; existing keys stay valid.
	EnforcementBlock Enforcement = "Block"
	// EnforcementRevoke: violating ApiKeys are blocked and their keys revoked.
	EnforcementRevoke Enforcement = "Revoke"
)

// ScopePattern matches scopes: `users:read`, `audit:*`, `*:read` or `*:*`.
// +kubebuilder:validation:MaxLength=128
// +kubebuilder:validation:Pattern=`^(\*|[a-z0-9]+([._-][a-z0-9]+)*):(\*|[a-z0-9]+([._-][a-z0-9]+)*)$`
type ScopePattern string

// ApiKeyPolicySpec holds platform rules for the ApiKeys in the namespaces it selects. Every policy that
// selects an ApiKey's namespace applies, and all must be satisfied.
// +kubebuilder:validation:XValidation:rule="!has(self.defaultExpiresAfter) || !has(self.maxExpiresAfter) || duration(self.defaultExpiresAfter) <= duration(self.maxExpiresAfter)",message="defaultExpiresAfter must not exceed maxExpiresAfter"
type ApiKeyPolicySpec struct {
	// NamespaceSelector selects the namespaces whose ApiKeys this policy governs; empty selects all.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// AllowedScopes lists the scopes ApiKeys may carry, as patterns (`users:read`, `audit:*`, `*:read`).
	// Empty allows every scope.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	AllowedScopes []ScopePattern `json:"allowedScopes,omitempty"`

	// AllowedEnvironments lists the environments ApiKeys may use; empty allows both.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	AllowedEnvironments []Environment `json:"allowedEnvironments,omitempty"`

	// MaxExpiresAfter is the longest key lifetime allowed.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="maxExpiresAfter must be at least 1m"
	MaxExpiresAfter *metav1.Duration `json:"maxExpiresAfter,omitempty"`

	// DefaultExpiresAfter is the key lifetime for ApiKeys that set none (instead of 2160h).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="defaultExpiresAfter must be at least 1m"
	DefaultExpiresAfter *metav1.Duration `json:"defaultExpiresAfter,omitempty"`

	// RequireRotation requires spec.rotation.
	// +optional
	RequireRotation bool `json:"requireRotation,omitempty"`

	// MaxRotationPeriod is the longest rotation period allowed.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="maxRotationPeriod must be at least 1m"
	MaxRotationPeriod *metav1.Duration `json:"maxRotationPeriod,omitempty"`

	// MaxOverlap is the longest overlap allowed.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MaxOverlap *metav1.Duration `json:"maxOverlap,omitempty"`

	// RevokeUnusedAfter applies to ApiKeys that set no spec.revokeUnusedAfter.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="revokeUnusedAfter must be at least 1m"
	RevokeUnusedAfter *metav1.Duration `json:"revokeUnusedAfter,omitempty"`

	// ExpiryWarning is how long before notAfter ExpiringSoon is raised (default 336h, 14 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	ExpiryWarning *metav1.Duration `json:"expiryWarning,omitempty"`

	// Enforcement is what happens to violating ApiKeys: Block (default) or Revoke.
	// +optional
	Enforcement Enforcement `json:"enforcement,omitempty"`
}

// ApiKeyPolicy is a cluster-wide rule set for ApiKeys.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=keysmith,shortName=akp
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`
// +kubebuilder:printcolumn:name="Max Lifetime",type=string,JSONPath=`.spec.maxExpiresAfter`
// +kubebuilder:printcolumn:name="Rotation",type=boolean,JSONPath=`.spec.requireRotation`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ApiKeyPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ApiKeyPolicySpec `json:"spec"`
}

// ApiKeyPolicyList is a list of ApiKeyPolicies.
// +kubebuilder:object:root=true
type ApiKeyPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApiKeyPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ApiKeyPolicy{}, &ApiKeyPolicyList{})
}
