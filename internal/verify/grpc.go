package verify

import (
	"context"
	"net"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/peer"
)

// ExtAuthz serves Envoy's external authorization gRPC API (envoy.service.auth.v3.Authorization/Check)
// with the same decision as the HTTP contract. Required scopes come from the route's
// context_extensions["scopes"] (set in Envoy's config, out of the client's reach) and from the
// x-required-scopes header; both apply.
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
	Service *Service
}

// Check implements authv3.AuthorizationServer.
func (x *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	headers := httpReq.GetHeaders() // Envoy lowercases header names
	key := ""
	if a := headers["authorization"]; len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		key = strings.TrimSpace(a[7:])
	} else {
		key = strings.TrimSpace(headers["x-api-key"])
	}
	var required []string
	for _, list := range []string{req.GetAttributes().GetContextExtensions()["scopes"], headers["x-required-scopes"]} {
		for _, s := range strings.Split(list, ",") {
			if s = strings.TrimSpace(s); s != "" {
				required = append(required, s)
			}
		}
	}
	info := RequestInfo{Method: httpReq.GetMethod(), Path: httpReq.GetPath()}
	if a := req.GetAttributes().GetSource().GetAddress().GetSocketAddress(); a != nil {
		info.Caller = a.GetAddress()
	} else if p, ok := peer.FromContext(ctx); ok {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			info.Caller = host
		}
	}
	res := x.Service.decide(key, required, info)
	return checkResponse(res, key, required), nil
}

func checkResponse(res Result, key string, required []string) *authv3.CheckResponse {
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
			header("www-authenticate", `Bearer realm="keysmith", error="insufficient_scope", scope="`+strings.Join(required, " ")+`"`))
	case CodeUnavailable:
		return denied(code.Code_UNAVAILABLE, typev3.StatusCode_ServiceUnavailable, noStore)
	default:
		return denied(code.Code_UNAUTHENTICATED, typev3.StatusCode_Unauthorized, noStore,
			header("www-authenticate", challenge(key)))
	}
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
