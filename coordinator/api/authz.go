package api

// Authorization: one interceptor asks one authorizer whether the verified
// identity of a request's client may make it. Without TLS material the node
// is insecure and authorizes everyone.

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/trust"
)

// identity returns the verified identity of the request's client; ok is
// false when the node is insecure or the client presented no certificate.
func (s *Service) identity(ctx context.Context) (trust.Identity, bool) {
	if s.cfg.Trust == nil {
		return trust.Identity{}, false
	}
	return trust.FromContext(ctx, s.cfg.Trust.TrustDomain())
}

// UnaryInterceptor authorizes every unary call to the public services.
func (s *Service) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.authorize(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// StreamInterceptor authorizes every streaming call to the public
// services; a stream's requests are authorized as they arrive by the
// service (Watch, KeepAliveStream).
func (s *Service) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.authorize(ss.Context(), info.FullMethod, nil); err != nil {
		return err
	}
	return h(srv, ss)
}

// authorize decides whether the request's client may call method with req
// (nil for a stream, before its first message).
func (s *Service) authorize(ctx context.Context, method string, req any) error {
	if s.cfg.Trust == nil {
		return nil
	}
	if _, ok := s.identity(ctx); !ok {
		return status.Errorf(codes.Unauthenticated, "%s: a verified client certificate is required", method)
	}
	return nil
}
