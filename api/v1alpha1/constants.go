package v1alpha1

import "time"

// Condition types. Ready, Reconciling and Stalled follow the kstatus conventions.
const (
	// ConditionReady is True when the Secret holds the current key and the key is valid.
	ConditionReady = "Ready"
	// ConditionReconciling is True while keysmith is making progress towards Ready (issuing the first key).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when keysmith cannot make progress without a change by a person.
	ConditionStalled = "Stalled"
	// ConditionExpiringSoon is True when the current key expires within the expiry warning and will not be
	// rotated before that.
	ConditionExpiringSoon = "ExpiringSoon"
)

// Condition reasons.
const (
	ReasonKeyActive       = "KeyActive"
	ReasonIssuing         = "Issuing"
	ReasonSecretConflict  = "SecretConflict"
	ReasonInvalidSpec     = "InvalidSpec"
	ReasonExpired         = "Expired"
	ReasonDeleting        = "Deleting"
	ReasonDisabled        = "Disabled"
	ReasonPolicyViolation = "PolicyViolation"
	ReasonUnused          = "Unused"
	ReasonRevoked         = "Revoked"
	ReasonWillExpire      = "WillExpire"
	ReasonNotExpiring     = "NotExpiring"
	// ReasonSecretWriteFailed: the API server refused the Secret (a policy, a quota, invalid metadata).
	ReasonSecretWriteFailed = "SecretWriteFailed"
)

// Event reasons. Events are emitted once per transition, never per reconcile.
const (
	EventKeyIssued         = "KeyIssued"
	EventKeyRotated        = "KeyRotated"
	EventKeyRetired        = "KeyRetired"
	EventKeyExpired        = "KeyExpired"
	EventKeyRevoked        = "KeyRevoked"
	EventSecretConflict    = "SecretConflict"
	EventSecretRestored    = "SecretRestored"
	EventInvalidSpec       = "InvalidSpec"
	EventSecretWriteFailed = "SecretWriteFailed"
	EventExpiringSoon      = "ExpiringSoon"
	EventInvalidAnnotation = "InvalidAnnotation"
	EventPolicyViolation   = "PolicyViolation"
)

// Revocation reasons recorded in status.keys[].reason.
const (
	// RevokedDeleted marks keys revoked because their ApiKey was deleted.
	RevokedDeleted = "Deleted"
	// RevokedManual marks keys revoked through the keysmith.dev/revoke annotation.
	RevokedManual = "Manual"
	// RevokedDisabled marks keys revoked by spec.disabled.
	RevokedDisabled = "Disabled"
	// RevokedUnused marks keys revoked because they were not used for revokeUnusedAfter.
	RevokedUnused = "Unused"
	// RevokedPolicy marks keys revoked by an ApiKeyPolicy with enforcement Revoke.
	RevokedPolicy = "PolicyViolation"
)

// Labels, annotations and finalizers.
const (
	// LabelManagedBy is set on every Secret keysmith writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on keysmith's Secrets.
	ManagedByValue = "keysmith"
	// LabelApiKey names the ApiKey that owns a Secret.
	LabelApiKey = "keysmith.dev/apikey"
	// AnnotationRotate requests one rotation each time its value changes.
	AnnotationRotate = "keysmith.dev/rotate"
	// AnnotationRevoke revokes keys at once: a comma-separated list of key ids, or "all". Each value is
	// handled once.
	AnnotationRevoke = "keysmith.dev/revoke"
	// Finalizer is held by every ApiKey until its keys are revoked and its Secret deleted.
	Finalizer = "keysmith.dev/revoke-keys"
)

// The Secret written for an ApiKey.
const (
	// SecretType is the type of the Secrets keysmith writes.
	SecretType = "keysmith.dev/api-key"
	// SecretKeyAPIKey holds the current plaintext key.
	SecretKeyAPIKey = "api-key"
	// SecretKeyKeyID holds the public id of the current key.
	SecretKeyKeyID = "key-id"
	// SecretKeyExpiresAt holds the RFC 3339 instant after which the current key is refused.
	SecretKeyExpiresAt = "expires-at"
)

// Effective defaults, applied in code (never written into spec).
const (
	// DefaultExpiresAfter is the lifetime of a key when spec.expiresAfter is not set: 90 days.
	DefaultExpiresAfter = 90 * 24 * time.Hour
	// MaxDefaultOverlap caps the overlap used when spec.rotation.overlap is not set.
	MaxDefaultOverlap = 24 * time.Hour
	// DefaultExpiryWarning is how long before notAfter ExpiringSoon is raised: 14 days.
	DefaultExpiryWarning = 14 * 24 * time.Hour
	// MaxKeysInStatus bounds status.keys.
	MaxKeysInStatus = 16
)
