package operator

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Names of the certificate and key in Options.MetricsCertDir (those of a kubernetes.io/tls Secret, as
// cert-manager writes them).
const (
	MetricsCertName = "tls.crt"
	MetricsKeyName  = "tls.key"
)

// metricsServerOptions configure /metrics. The per-ApiKey metrics name ApiKeys and key ids, so by default
// they are served over HTTPS and each request must carry a bearer token that the API server accepts
// (TokenReview) for a user allowed to `get` the non-resource URL /metrics (SubjectAccessReview): the
// keysmith-metrics-reader ClusterRole. This needs create on tokenreviews and subjectaccessreviews
// (config/rbac/metrics_auth_role.yaml). insecure serves plain HTTP to anyone, for local runs.
//
// The certificate comes from certDir (reloaded when it changes). When certDir is empty, controller-runtime
// looks in <temp dir>/k8s-metrics-server/serving-certs and, finding nothing there (the containers' root
// file system is read-only), generates a self-signed certificate at start. HTTP/2 is not offered: a scrape needs HTTP/1.1 only, and this keeps the endpoint clear of
// HTTP/2 stream-reset floods.
func metricsServerOptions(bindAddress string, insecure bool, certDir string) (metricsserver.Options, error) {
	if insecure {
		return metricsserver.Options{BindAddress: bindAddress}, nil
	}
	if certDir != "" {
		for _, name := range []string{MetricsCertName, MetricsKeyName} {
			if _, err := os.Stat(filepath.Join(certDir, name)); err != nil {
				return metricsserver.Options{}, fmt.Errorf("--metrics-cert-dir: %w", err)
			}
		}
	}
	return metricsserver.Options{
		BindAddress:    bindAddress,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        certDir,
		CertName:       MetricsCertName,
		KeyName:        MetricsKeyName,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"}
		}},
	}, nil
}
