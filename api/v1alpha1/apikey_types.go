package v1alpha1

import (
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Environment is part of every key's prefix: live keys for production, test keys for everything else.
// +kubebuilder:validation:Enum=live;test
type Environment string

const (
	EnvironmentLive Environment = "live"
	EnvironmentTest Environment = "test"
)

// ApiKeySpec is what a platform team declares. keysmith never writes it and sets no defaults on it;
// the values it applies are shown in status.effective.
// +kubebuilder:validation:XValidation:rule="(has(oldSelf.environment) ? oldSelf.environment : 'live') == (has(self.environment) ? self.environment : 'live')",message="environment is immutable: a key's environment is part of the key; create a new ApiKey instead"
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !has(self.expiresAfter) || duration(self.rotation.period).getSeconds() + (has(self.rotation.overlap) ? duration(self.rotation.overlap).getSeconds() : (duration(self.rotation.period).getSeconds() / 2 < 86400 ? duration(self.rotation.period).getSeconds() / 2 : 86400)) <= duration(self.expiresAfter).getSeconds()",message="rotation.period + rotation.overlap (default: the smaller of 24h and half the period) must not exceed expiresAfter, or a key would expire before its successor is issued"
type ApiKeySpec struct {
	// Scopes the key carries, each `resource:action` in lowercase (for example `users:read`, `roles:manage`).
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]+([._-][a-z0-9]+)*:[a-z0-9]+([._-][a-z0-9]+)*$`
	Scopes []string `json:"scopes"`

	// Environment of the key, `live` or `test`; empty means `live`. It appears in the key's prefix
	// (`ks_live_...`) and cannot be changed.
	// +optional
	Environment Environment `json:"environment,omitempty"`

	// SecretName is the Secret in the ApiKey's namespace that receives the current key. keysmith creates it,
	// owns it and never touches a Secret of that name that it did not create. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="secretName is immutable"
	SecretName string `json:"secretName"`

	// SecretTemplate adds labels and annotations to the Secret. keysmith's own label keys are reserved.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`

	// Rotation replaces the key on a schedule, keeping the previous key valid for an overlap.
	// +optional
	Rotation *RotationSpec `json:"rotation,omitempty"`

	// ExpiresAfter is the lifetime of each key (for example `2160h`). Defaults to 2160h (90 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="expiresAfter must be at least 1m"
	ExpiresAfter *metav1.Duration `json:"expiresAfter,omitempty"`

	// RevokeUnusedAfter revokes a key that has not been used for this long (counted from its last use, or
	// from its issue time if it was never used), reason `Unused`. A rotate request issues a fresh key.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="revokeUnusedAfter must be at least 1m"
	RevokeUnusedAfter *metav1.Duration `json:"revokeUnusedAfter,omitempty"`

	// Disabled is a kill switch: every key is revoked (reason `Disabled`) and the Secret's api-key is
	// emptied. Setting it back to false issues a fresh key; revoked keys never come back.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// SecretTemplate holds metadata added to the Secret. Its limits bound what an ApiKey makes keysmith
// (and every verifier, which caches ApiKeys) keep in memory: at most 32 labels and 32 annotations, keys
// that the API server accepts on any object, values of at most 63 (labels) and 4096 (annotations)
// characters.
// +kubebuilder:object:generate=false
type SecretTemplate struct {
	// Labels added to the Secret, at most 32. A key is a qualified name: an optional prefix (a DNS
	// subdomain of at most 253 characters) and `/`, then a name of at most 63 characters. A value has at
	// most 63 characters, alphanumeric at both ends with `-`, `_` or `.` between, or is empty.
	// `app.kubernetes.io/managed-by` and keys under `keysmith.dev/` are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="!('app.kubernetes.io/managed-by' in self) && self.all(k, !k.startsWith('keysmith.dev/'))",message="secretTemplate.labels must not set app.kubernetes.io/managed-by or keys under keysmith.dev/"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !format.qualifiedName().validate(k).hasValue())",message="secretTemplate.labels keys must be qualified names: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters, alphanumeric at both ends with '-', '_' or '.' between"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !format.labelValue().validate(self[k]).hasValue())",message="secretTemplate.labels values must have at most 63 characters, alphanumeric at both ends with '-', '_' or '.' between, or be empty"
	Labels map[string]TemplateLabelValue `json:"labels,omitempty"`

	// Annotations added to the Secret (for example Reloader's `reloader.stakater.com/match: "true"`), at
	// most 32. A key is a qualified name as for labels (the prefix may have capitals); a value has at most
	// 4096 characters.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !format.qualifiedName().validate(k.lowerAscii()).hasValue())",message="secretTemplate.annotations keys must be qualified names: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters, alphanumeric at both ends with '-', '_' or '.' between"
	Annotations map[string]TemplateAnnotationValue `json:"annotations,omitempty"`
}

// TemplateLabelValue is a label value: at most 63 characters.
// +kubebuilder:validation:MaxLength=63
type TemplateLabelValue = string // an alias: the maps stay map[string]string; the CRD bounds the values

// TemplateAnnotationValue is an annotation value: at most 4096 characters.
// +kubebuilder:validation:MaxLength=4096
type TemplateAnnotationValue = string

// DeepCopyInto copies the template into out. It is written here because controller-gen's deepcopy does
// not handle maps of alias types (+kubebuilder:object:generate=false above).
func (in *SecretTemplate) DeepCopyInto(out *SecretTemplate) {
	*out = *in
	out.Labels = maps.Clone(in.Labels)
	out.Annotations = maps.Clone(in.Annotations)
}

// DeepCopy returns a copy of the template.
func (in *SecretTemplate) DeepCopy() *SecretTemplate {
	if in == nil {
		return nil
	}
	out := new(SecretTemplate)
	in.DeepCopyInto(out)
	return out
}

// RotationSpec schedules rotations.
// +kubebuilder:validation:XValidation:rule="!has(self.overlap) || duration(self.overlap) < duration(self.period)",message="rotation.overlap must be shorter than rotation.period"
type RotationSpec struct {
	// Period between rotations, counted from the current key's issue time (for example `720h`).
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="rotation.period must be at least 1m"
	Period metav1.Duration `json:"period"`

	// Overlap is how long the previous key stays valid after a rotation, so that clients can pick up the
	// new key without failing. `0s` retires it at once. Defaults to the smaller of 24h and half the period.
	// Without rotation, unscheduled rotations (a rotate request, a repaired Secret) use the smaller of 24h
	// and half of expiresAfter.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Overlap *metav1.Duration `json:"overlap,omitempty"`
}

// KeyState is the state of one issued key.
// +kubebuilder:validation:Enum=Active;Retiring;Revoked;Expired
type KeyState string

const (
	// KeyActive is the current key, the one in the Secret.
	KeyActive KeyState = "Active"
	// KeyRetiring is a previous key that stays valid until its notAfter (the end of its overlap).
	KeyRetiring KeyState = "Retiring"
	// KeyRevoked is refused; revokedAt and reason say when and why.
	KeyRevoked KeyState = "Revoked"
	// KeyExpired is refused because its notAfter has passed.
	KeyExpired KeyState = "Expired"
)

// IssuedKey describes one key keysmith issued. It never holds the key itself.
type IssuedKey struct {
	// ID is the key's short public identifier, safe to log and to show.
	ID string `json:"id"`
	// Hash is `sha256:<hex>` of the whole key.
	Hash string `json:"hash"`
	// State of the key.
	State KeyState `json:"state"`
	// IssuedAt is when the key was generated.
	IssuedAt metav1.Time `json:"issuedAt"`
	// NotAfter is the instant the key stops being accepted: the end of its overlap once retiring,
	// otherwise issuedAt + expiresAfter.
	NotAfter metav1.Time `json:"notAfter"`
	// RevokedAt is when the key was revoked.
	// +optional
	RevokedAt *metav1.Time `json:"revokedAt,omitempty"`
	// Reason says why the key was revoked.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Scopes are the scopes keysmith granted this key after evaluating the ApiKeyPolicies that apply. A
	// verifier accepts a scope only when it is both here and in the current spec.scopes, so a scope added
	// to the spec opens nothing until keysmith has approved it, and a removed one is refused at once.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	Scopes []string `json:"scopes,omitempty"`
	// LastUsedAt is the newest verification that accepted this key, as reported by the verifiers
	// (flushed at most once per key per interval, never moved back).
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`
}

// EffectiveSettings are the values keysmith applies after defaults.
type EffectiveSettings struct {
	Environment    Environment      `json:"environment"`
	ExpiresAfter   metav1.Duration  `json:"expiresAfter"`
	RotationPeriod *metav1.Duration `json:"rotationPeriod,omitempty"`
	Overlap        *metav1.Duration `json:"overlap,omitempty"`
	// RevokeUnusedAfter revokes keys unused for this long; unset means never.
	RevokeUnusedAfter *metav1.Duration `json:"revokeUnusedAfter,omitempty"`
	// ExpiryWarning is how long before the current key's notAfter ExpiringSoon is raised, for keys that
	// will not be rotated in time.
	ExpiryWarning metav1.Duration `json:"expiryWarning"`
	// Policies lists the ApiKeyPolicies that apply.
	// +optional
	Policies []string `json:"policies,omitempty"`
}

// ApiKeyStatus is written by keysmith only.
type ApiKeyStatus struct {
	// ObservedGeneration is the generation whose spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// CurrentKeyID is the id of the key in the Secret.
	// +optional
	CurrentKeyID string `json:"currentKeyID,omitempty"`

	// NextRotationAt is when the current key is next rotated.
	// +optional
	NextRotationAt *metav1.Time `json:"nextRotationAt,omitempty"`

	// Effective shows the settings applied after defaults.
	// +optional
	Effective *EffectiveSettings `json:"effective,omitempty"`

	// HandledRotateRequest is the last value of the keysmith.dev/rotate annotation that was acted on.
	// +optional
	HandledRotateRequest string `json:"handledRotateRequest,omitempty"`

	// HandledRevokeRequest is the last value of the keysmith.dev/revoke annotation that was acted on.
	// +optional
	HandledRevokeRequest string `json:"handledRevokeRequest,omitempty"`

	// LastUsedAt is the newest use of any of this ApiKey's keys.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// Keys issued for this ApiKey, newest first, at most 16.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Keys []IssuedKey `json:"keys,omitempty"`
}

// ApiKey declares an API key that keysmith issues into a Secret, rotates and revokes.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=keysmith,shortName=ak
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Scopes",type=string,JSONPath=`.spec.scopes`
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.status.currentKeyID`
// +kubebuilder:printcolumn:name="Rotates",type=string,JSONPath=`.status.nextRotationAt`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Secret",type=string,priority=1,JSONPath=`.spec.secretName`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="ApiKey names are at most 63 characters (the name is used as a label value on the Secret)"
type ApiKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ApiKeySpec   `json:"spec"`
	Status ApiKeyStatus `json:"status,omitempty"`
}

// ApiKeyList is a list of ApiKeys.
// +kubebuilder:object:root=true
type ApiKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApiKey `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ApiKey{}, &ApiKeyList{})
}
