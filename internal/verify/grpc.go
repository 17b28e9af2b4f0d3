package verify

import (
	"context"
	"encoding/json"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// ExtAuthz serves Envoy's external authorization gRPC API (envoy.service.auth.v3.Authorization/Check)
// with the same decision as the HTTP contract. Required scopes come from the route's
// context_extensions["scopes"] (set in Envoy's config, out of the client's reach) and from the
// x-required-scopes header; both apply. The constraints come from context_extensions["namespaces"] and
// context_extensions["environment"] only.
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
	Service *Service
}

// Check implements authv3.AuthorizationServer.
func (x *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	attrs := req.GetAttributes()
	q, bad := extAuthzRequest(attrs.GetContextExtensions(), attrs.GetRequest().GetHttp().GetHeaders())
	if bad != nil {
		if m := x.Service.Metrics; m != nil {
			m.invalid(bad.code)
		}
		return invalidResponse(bad), nil
	}
	res := x.Service.decide(q, x.Service.grpcInfo(ctx, attrs))
	return checkResponse(res, q), nil
}

// extAuthzRequest reads the question from the CheckRequest: headers (Envoy lowercases their names) and
// the route's context_extensions.
func extAuthzRequest(extensions, headers map[string]string) (Request, *requestError) {
	var q Request
	if a := headers["authorization"]; len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		q.Key = strings.TrimSpace(a[7:])
	} else {
		q.Key = strings.TrimSpace(headers["x-api-key"])
	}
	var err *requestError
	for _, list := range []string{extensions["scopes"], headers["x-required-scopes"]} {
		if q.Scopes, err = parseScopes(q.Scopes, list); err != nil {
			return Request{}, err
		}
	}
	if q.Accept, err = parseConstraints(present(extensions, "namespaces"), present(extensions, "environment")); err != nil {
		return Request{}, err
	}
	return q, nil
}

// present returns m[k] as a list of one value when k is set (even to ""), else nil.
func present(m map[string]string, k string) []string {
	if v, ok := m[k]; ok {
		return []string{v}
	}
	return nil
}

// checkMethod is what an untrusted peer's audit record names as its method and path.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// grpcInfo describes the caller for the audit trail. A CheckRequest's source address and original
// method and path are whatever its sender wrote: they are believed only from a trusted proxy. From anyone
// else the record holds the peer's address and the RPC itself.
func (s *Service) grpcInfo(ctx context.Context, attrs *authv3.AttributeContext) RequestInfo {
	info := RequestInfo{Method: "POST", Path: checkMethod}
	if m, ok := grpc.Method(ctx); ok {
		info.Path = m
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return info
	}
	info.Caller = hostOf(p.Addr.String())
	if a, ok := parseAddr(info.Caller); !ok || !s.trusts(a) {
		return info
	}
	if src, ok := parseAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()); ok {
		info.Caller = src.String()
	}
	httpReq := attrs.GetRequest().GetHttp()
	info.Method, info.Path = httpReq.GetMethod(), httpReq.GetPath()
	return info
}

func checkResponse(res Result, q Request) *authv3.CheckResponse {
	noStore := header("cache-control", "no-store")
	switch res.Code {
	case CodeValid:
		e := res.Entry
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					header("x-apikey-id", e.KeyID),
					header("x-apikey-name", e.Namespace+"/"+e.Name),
					header("x-apikey-scopes", strings.Join(e.Scopes, ",")),
				},
			}},
		}
	case CodeInsufficientScope:
		return denied(code.Code_PERMISSION_DENIED, typev3.StatusCode_Forbidden, noStore,
			header("www-authenticate", insufficientScopeChallenge(q.Scopes)))
	case CodeNotAccepted:
		return denied(code.Code_PERMISSION_DENIED, typev3.StatusCode_Forbidden, noStore,
			header("www-authenticate", notAcceptedChallenge))
	case CodeUnavailable:
		return denied(code.Code_UNAVAILABLE, typev3.StatusCode_ServiceUnavailable, noStore)
	default:
		return denied(code.Code_UNAUTHENTICATED, typev3.StatusCode_Unauthorized, noStore,
			header("www-authenticate", challenge(q.Key)))
	}
}

// invalidResponse refuses a CheckRequest with invalid scopes or constraints: INVALID_ARGUMENT, and for
// the client a 400 with the same JSON body as the HTTP API.
func invalidResponse(e *requestError) *authv3.CheckResponse {
	resp := denied(code.Code_INVALID_ARGUMENT, typev3.StatusCode_BadRequest,
		header("cache-control", "no-store"), header("content-type", "application/json"),
		header("www-authenticate", invalidRequestChallenge))
	body, _ := json.Marshal(ErrorResponse{Code: e.code, Error: e.msg})
	resp.Status.Message = e.msg
	resp.GetDeniedResponse().Body = string(body)
	return resp
}

func denied(c code.Code, httpStatus typev3.StatusCode, headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(c)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpStatus},
			Headers: headers,
		}},
	}
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
