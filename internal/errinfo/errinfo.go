// Package errinfo carries the kind of a Colony error on the wire: a
// google.rpc.ErrorInfo detail in contract.ErrorDomain whose reason is one of
// contract.Reason*, on a gRPC status or in a failed Multi op's OpError. The
// coordinator's API writes it; the Go client and the node's peer hop read
// it. One place, so both sides agree on the domain and the detail type.
package errinfo

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// With returns st with reason attached; st itself when reason is empty.
func With(st *status.Status, reason string) *status.Status {
	if reason == "" {
		return st
	}
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: contract.ErrorDomain}); err == nil {
		return d
	}
	return st
}

// Reason is the reason st carries in Colony's domain, "" if none.
func Reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == contract.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// ToOpError is st as a failed op's or forwarded batch's OpError.
func ToOpError(st *status.Status) *colonyv1.OpError {
	return &colonyv1.OpError{Code: int32(st.Code()), Message: st.Message(), Reason: Reason(st)}
}

// FromOpError is the status e carries, its reason included.
func FromOpError(e *colonyv1.OpError) *status.Status {
	return With(status.New(codes.Code(e.GetCode()), e.GetMessage()), e.GetReason())
}
