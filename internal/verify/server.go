package verify

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// Options configure the verifier. The same flags exist on `keysmith manager` and `keysmith verifier`.
type Options struct {
	HTTPAddress   string
	GRPCAddress   string
	TLSCertFile   string
	TLSKeyFile    string
	Namespaces    string // comma separated
	LabelSelector string
	FlushInterval time.Duration
	AuditSink     string
	AuditQueue    int
	// AuditQueueBytes bounds the audit queue in bytes as well; 0 means DefaultAuditQueueBytes.
	AuditQueueBytes int64
	// TrustedProxies are comma-separated IP addresses or CIDRs whose forwarding headers are believed.
	TrustedProxies string
	MaxStaleness   time.Duration
	// Clock is injected by tests; nil means the real clock.
	Clock clock.PassiveClock
}

// BindFlags registers the verifier's flags on fs, storing into o.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.HTTPAddress, "verify-http-address", ":8083", "Address of the verification HTTP API (/v1/verify, /authz); \"0\" disables it.")
	fs.StringVar(&o.GRPCAddress, "verify-grpc-address", ":8084", "Address of the Envoy ext_authz gRPC API; \"0\" disables it.")
	fs.StringVar(&o.TLSCertFile, "verify-tls-cert-file", "", "TLS certificate for both verification APIs (PEM); reloaded when it changes. Plain text when unset.")
	fs.StringVar(&o.TLSKeyFile, "verify-tls-key-file", "", "TLS private key matching --verify-tls-cert-file.")
	fs.StringVar(&o.Namespaces, "verify-namespaces", "", "Comma-separated namespaces whose ApiKeys are served; empty serves all.")
	fs.StringVar(&o.LabelSelector, "verify-label-selector", "", "Label selector of the ApiKeys served (for example team=payments); empty serves all.")
	fs.DurationVar(&o.FlushInterval, "verify-last-used-flush-interval", time.Minute, "How often lastUsedAt is written to ApiKey status (at most once per key per interval).")
	fs.StringVar(&o.AuditSink, "verify-audit-sink", "stdout", "Where audit records go, one JSON line per decision: stdout, or a file path (appended).")
	fs.IntVar(&o.AuditQueue, "verify-audit-queue", 65536, "Audit records buffered before new ones are dropped (and counted in keysmith_verify_audit_dropped_total).")
	fs.Int64Var(&o.AuditQueueBytes, "verify-audit-queue-bytes", DefaultAuditQueueBytes, "Bytes of audit records buffered (as well as at most --verify-audit-queue records) before new ones are dropped; at least 65536.")
	fs.StringVar(&o.TrustedProxies, "verify-trusted-proxies", "", "Comma-separated IP addresses or CIDRs of the proxies whose forwarding headers the audit trail believes (X-Forwarded-For, X-Real-Ip, X-Forwarded-Method/-Uri, X-Original-*, Envoy's source address and original path); empty trusts none, and the audit records the peer's address and the request's own method and path.")
	fs.DurationVar(&o.MaxStaleness, "verify-max-staleness", 30*time.Second, "How long the verifier keeps answering from its index while its ApiKey watch is broken; after that every check gets 503.")
}

// Verifier is the verification service wired into a controller-runtime manager.
type Verifier struct {
	Index   *MemoryIndex
	Service *Service
	opts    Options
	httpLn  net.Listener
	grpcLn  net.Listener
	audit   io.Closer
	// stopAudit ends the audit trail once the servers have stopped (Close); auditDone closes when its
	// last records are written.
	auditMu   sync.Mutex
	stopAudit context.CancelFunc
	auditDone chan struct{}
	certs     *certReloader
	trusted   []netip.Prefix
	serving   serving
	// ListTransform, when set, is applied to every ApiKey the staleness probe lists from the API server,
	// so that the index gets from a list exactly what it gets from the informer's (transformed) cache.
	ListTransform func(*v1alpha1.ApiKey) *v1alpha1.ApiKey
}

// New prepares a verifier. Call WatchErrorHandler when building the manager's cache and Attach once the
// manager exists.
func New(o Options) (*Verifier, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	scope := Scope{}
	for _, ns := range strings.Split(o.Namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			scope.Namespaces = append(scope.Namespaces, ns)
		}
	}
	if o.LabelSelector != "" {
		sel, err := labels.Parse(o.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("--verify-label-selector: %w", err)
		}
		scope.Selector = sel
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return nil, errors.New("--verify-tls-cert-file and --verify-tls-key-file go together")
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Minute
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = 30 * time.Second
	}
	if o.AuditQueue <= 0 {
		o.AuditQueue = 65536
	}
	switch {
	case o.AuditQueueBytes == 0:
		o.AuditQueueBytes = DefaultAuditQueueBytes
	case o.AuditQueueBytes < MinAuditQueueBytes:
		return nil, fmt.Errorf("--verify-audit-queue-bytes must be at least %d", MinAuditQueueBytes)
	}
	trusted, err := ParseTrustedProxies(o.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--verify-trusted-proxies: %w", err)
	}
	v := &Verifier{opts: o, trusted: trusted}
	v.Index = NewMemoryIndex(scope, o.Clock, func() bool { return false }, o.MaxStaleness)
	return v, nil
}

// Scope returns the namespaces and label selector served, for scoping the manager's ApiKey cache.
func (v *Verifier) Scope() Scope { return v.Index.scope }

// WatchErrorHandler starts the staleness clock when the ApiKey watch fails, then does what client-go
// does by default (log and back off).
func (v *Verifier) WatchErrorHandler(ctx context.Context, r *toolscache.Reflector, err error) {
	if strings.Contains(r.TypeDescription(), "ApiKey") {
		v.Index.WatchBroken()
	}
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
}

// Attach feeds the index from the manager's ApiKey informer and adds the servers, the audit writer, the
// last-used flusher and the staleness probe to the manager. None of them needs leader election: every
// replica verifies.
func (v *Verifier) Attach(mgr ctrl.Manager) error {
	log := ctrl.Log.WithName("verifier")
	inf, err := mgr.GetCache().GetInformer(context.Background(), &v1alpha1.ApiKey{})
	if err != nil {
		return err
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { v.upsert(obj) },
		UpdateFunc: func(old, obj any) {
			// A resync replays the informer's store: nothing new, and possibly older than what the probe
			// listed while the watch was broken.
			if o, ok := old.(*v1alpha1.ApiKey); ok {
				if n, ok := obj.(*v1alpha1.ApiKey); ok && o.ResourceVersion == n.ResourceVersion {
					return
				}
			}
			v.upsert(obj)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if ak, ok := obj.(*v1alpha1.ApiKey); ok {
				v.Index.DeleteObject(ak)
			}
		},
	})
	if err != nil {
		return err
	}
	v.Index.synced = reg.HasSynced
	if r, ok := inf.(interface{ LastSyncResourceVersion() string }); ok {
		v.Index.TrackReflector(r.LastSyncResourceVersion)
	}

	metrics := NewMetrics(ctrlmetrics.Registry, func() float64 { return float64(v.Index.Len()) })
	sink, closer, err := openSink(v.opts.AuditSink)
	if err != nil {
		return err
	}
	v.audit = closer
	auditor := NewAuditor(sink, AuditOptions{Queue: v.opts.AuditQueue, QueueBytes: v.opts.AuditQueueBytes, Log: log.WithName("audit"), Metrics: metrics})
	v.Service = &Service{Index: v.Index, Clock: v.opts.Clock, Audit: auditor, Metrics: metrics, TrustedProxies: v.trusted}

	tlsConfig, err := v.tlsConfig(log)
	if err != nil {
		return err
	}
	runnables := []func(context.Context) error{
		func(ctx context.Context) error {
			// The trail runs until Close, not until ctx ends: controller-runtime stops the servers after
			// every other runnable, and they answer their last requests while they shut down, so the trail
			// must outlive this runnable for those decisions to be written. Any decision after Close is
			// counted as dropped (reason closed).
			auditCtx, stop := context.WithCancel(context.Background())
			done := make(chan struct{})
			v.auditMu.Lock()
			v.stopAudit, v.auditDone = stop, done
			v.auditMu.Unlock()
			go func() {
				defer close(done)
				_ = auditor.Run(auditCtx)
				if v.audit != nil {
					_ = v.audit.Close()
				}
			}()
			<-ctx.Done()
			return nil
		},
		(&Flusher{Index: v.Index, Reader: mgr.GetCache(), Client: mgr.GetClient(), Interval: v.opts.FlushInterval, Log: log.WithName("last-used")}).Start,
		func(ctx context.Context) error {
			v.Index.Probe(ctx, time.Second, v.ping(mgr.GetAPIReader()), v.list(mgr.GetAPIReader()))
			return nil
		},
	}
	var servers []*manager.Server
	if v.opts.HTTPAddress != "0" && v.opts.HTTPAddress != "" {
		if v.httpLn, err = net.Listen("tcp", v.opts.HTTPAddress); err != nil {
			return fmt.Errorf("--verify-http-address: %w", err)
		}
		servers = append(servers, v.serveHTTP(tlsConfig))
	}
	if v.opts.GRPCAddress != "0" && v.opts.GRPCAddress != "" {
		if v.grpcLn, err = net.Listen("tcp", v.opts.GRPCAddress); err != nil {
			return fmt.Errorf("--verify-grpc-address: %w", err)
		}
		srv, health := v.serveGRPC(tlsConfig)
		servers = append(servers, srv)
		runnables = append(runnables, health)
	}
	for _, s := range servers {
		if err := mgr.Add(s); err != nil {
			return err
		}
	}
	log.Info("verification service configured", "http", v.HTTPAddr(), "grpc", v.GRPCAddr(), "tls", tlsConfig != nil)
	for _, r := range runnables {
		if err := mgr.Add(everyReplica(r)); err != nil {
			return err
		}
	}
	return mgr.AddReadyzCheck("verifier-index", func(*http.Request) error { return v.Index.Ready() })
}

// Close ends the audit trail once the verification servers are done: call it after the manager's Start
// has returned (operator.Manager does). It writes the decisions still queued and closes the sink; a
// verifier whose manager never ran has nothing to close.
func (v *Verifier) Close() {
	v.auditMu.Lock()
	stop, done := v.stopAudit, v.auditDone
	v.auditMu.Unlock()
	if stop == nil {
		return
	}
	if !v.serving.wait(shutdownTimeout + time.Second) {
		ctrl.Log.WithName("verifier").Info("closing the audit trail while verification servers still run; later decisions are counted, not written")
	}
	stop()
	<-done
}

func (v *Verifier) upsert(obj any) {
	if ak, ok := obj.(*v1alpha1.ApiKey); ok {
		v.Index.Upsert(ak)
	}
}

// HTTPAddr and GRPCAddr return the bound addresses (useful with port 0).
func (v *Verifier) HTTPAddr() string { return addrOf(v.httpLn) }
func (v *Verifier) GRPCAddr() string { return addrOf(v.grpcLn) }

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// serveHTTP returns the HTTP API as a manager server: the manager starts those before its caches sync,
// so that an unsynced verifier answers 503 (and /readyz fails) instead of refusing connections.
func (v *Verifier) serveHTTP(tlsConfig *tls.Config) *manager.Server {
	mux := http.NewServeMux()
	mux.Handle("/", v.Service.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := v.Index.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return v.managedServer("verify-http", v.newServer(mux), v.httpLn, tlsConfig)
}

// Limits of both verification servers. A client gets MaxHeaderBytes of request line and headers
// (HTTP/1.1; the HTTP/2 header list is bounded by the same value), ReadTimeout to send its whole request,
// WriteTimeout (per request, or per HTTP/2 stream) to be answered, and IdleTimeout between requests. A
// gRPC message is at most MaxGRPCMessageBytes.
const (
	MaxHeaderBytes      = 16 << 10
	ReadHeaderTimeout   = 5 * time.Second
	ReadTimeout         = 10 * time.Second
	WriteTimeout        = 15 * time.Second
	IdleTimeout         = 2 * time.Minute
	MaxGRPCMessageBytes = 64 << 10
	shutdownTimeout     = 10 * time.Second
)

// newServer returns an HTTP server with the verifier's limits, whose connections v.serving tracks.
func (v *Verifier) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler: h, MaxHeaderBytes: MaxHeaderBytes,
		ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout,
		ConnState: v.serving.connState,
	}
}

// serveGRPC returns the ext_authz gRPC API, served through net/http (HTTP/2 over TLS, or unencrypted
// HTTP/2 with prior knowledge in plain text, as Envoy and gRPC clients speak it) so that it too starts
// before the caches sync, and so that the server's limits and graceful shutdown cover its streams.
func (v *Verifier) serveGRPC(tlsConfig *tls.Config) (*manager.Server, func(context.Context) error) {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(MaxGRPCMessageBytes))
	authv3.RegisterAuthorizationServer(g, &ExtAuthz{Service: v.Service})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	srv := v.newServer(g)
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true) // gRPC answers an HTTP/1 request with an error of its own
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(tlsConfig == nil)
	// Report readiness to gRPC health checks (Envoy can use them).
	reportHealth := func(ctx context.Context) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			st := healthpb.HealthCheckResponse_SERVING
			if v.Index.Ready() != nil {
				st = healthpb.HealthCheckResponse_NOT_SERVING
			}
			hs.SetServingStatus("", st)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
	return v.managedServer("verify-grpc", srv, v.grpcLn, tlsConfig), reportHealth
}

func (v *Verifier) managedServer(name string, srv *http.Server, ln net.Listener, tlsConfig *tls.Config) *manager.Server {
	ln = v.serving.listener(ln)
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	timeout := shutdownTimeout
	return &manager.Server{Name: name, Server: srv, Listener: ln, ShutdownTimeout: &timeout}
}

// serving tracks the verification servers' listeners and connections, so that the audit trail can close
// once no decision can be made any more.
type serving struct {
	conns     atomic.Int64
	listeners sync.WaitGroup
}

// listener returns l, counted as open until it is closed (Shutdown closes it first).
func (s *serving) listener(l net.Listener) net.Listener {
	s.listeners.Add(1)
	return &trackedListener{Listener: l, closed: sync.OnceFunc(s.listeners.Done)}
}

type trackedListener struct {
	net.Listener
	closed func()
}

func (l *trackedListener) Close() error {
	defer l.closed()
	return l.Listener.Close()
}

func (s *serving) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.conns.Add(-1)
	}
}

// wait returns true once every listener is closed and every connection has ended, false if that takes
// longer than timeout.
func (s *serving) wait(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	closed := make(chan struct{})
	go func() { s.listeners.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(timeout):
		return false
	}
	for s.conns.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// ParseTrustedProxies reads a comma-separated list of IP addresses and CIDRs (an address is a /32 or a
// /128).
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR: %w", item, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", item)
		}
		if a.Zone() != "" {
			return nil, fmt.Errorf("%q: zones are not supported", item)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// everyReplica wraps a function as a manager runnable that runs on every replica, leader or not.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (f everyReplica) NeedLeaderElection() bool        { return false }

func openSink(sink string) (io.Writer, io.Closer, error) {
	switch sink {
	case "", "stdout":
		return os.Stdout, nil, nil
	default:
		f, err := os.OpenFile(sink, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--verify-audit-sink: %w", err)
		}
		return f, f, nil
	}
}

// tlsConfig returns nil for plain text, else a config whose certificate is reloaded from disk when the
// files change (checked at most every 10 seconds, on handshakes).
func (v *Verifier) tlsConfig(log logr.Logger) (*tls.Config, error) {
	if v.opts.TLSCertFile == "" {
		return nil, nil
	}
	r := &certReloader{certFile: v.opts.TLSCertFile, keyFile: v.opts.TLSKeyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	v.certs = r
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get, NextProtos: []string{"h2", "http/1.1"}}, nil
}

type certReloader struct {
	certFile, keyFile string
	log               logr.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func (r *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading the verifier's TLS certificate: %w", err)
	}
	st, err := os.Stat(r.certFile)
	if err != nil {
		return err
	}
	r.cert, r.modTime = &cert, st.ModTime()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > 10*time.Second {
		r.checked = time.Now()
		if st, err := os.Stat(r.certFile); err == nil && !st.ModTime().Equal(r.modTime) {
			if err := r.load(); err != nil {
				r.log.Error(err, "reloading the TLS certificate; keeping the previous one")
			} else {
				r.log.Info("reloaded the TLS certificate")
			}
		}
	}
	return r.cert, nil
}

// ping asks the API server for at most one ApiKey in the scope served.
func (v *Verifier) ping(r client.Reader) func(context.Context) error {
	ns := ""
	if len(v.Index.scope.Namespaces) > 0 {
		ns = v.Index.scope.Namespaces[0]
	}
	return func(ctx context.Context) error {
		return r.List(ctx, &v1alpha1.ApiKeyList{}, client.InNamespace(ns), client.Limit(1))
	}
}

// listPage is how many ApiKeys the staleness probe asks for at a time.
const listPage = 500

// list reads every ApiKey in the scope served from the API server, with the resourceVersion of the
// (oldest) list.
func (v *Verifier) list(r client.Reader) func(context.Context) ([]v1alpha1.ApiKey, string, error) {
	namespaces := v.Index.scope.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	return func(ctx context.Context) ([]v1alpha1.ApiKey, string, error) {
		var out []v1alpha1.ApiKey
		rv := ""
		for _, ns := range namespaces {
			// Pages of listPage, each transformed as the cache transforms ApiKeys, so a large cluster's
			// list never sits in memory whole and untransformed. Every page is of the first one's
			// resourceVersion.
			opts := []client.ListOption{client.InNamespace(ns), client.Limit(listPage)}
			if v.Index.scope.Selector != nil {
				opts = append(opts, client.MatchingLabelsSelector{Selector: v.Index.scope.Selector})
			}
			cont := ""
			for first := true; first || cont != ""; first = false {
				l := &v1alpha1.ApiKeyList{}
				if err := r.List(ctx, l, append(opts, client.Continue(cont))...); err != nil {
					return nil, "", err
				}
				if first && (rv == "" || parseRV(l.ResourceVersion) < parseRV(rv)) {
					rv = l.ResourceVersion
				}
				for i := range l.Items {
					item := &l.Items[i]
					if v.ListTransform != nil {
						item = v.ListTransform(item)
					}
					out = append(out, *item)
				}
				cont = l.Continue
			}
		}
		return out, rv, nil
	}
}
