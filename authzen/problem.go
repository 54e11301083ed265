package authzen

import (
	"encoding/json"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
)

// problem is an RFC 9457 problem details object. Its extension members carry what the
// gRPC API carries in google.rpc.ErrorInfo: the reason, its domain and metadata, and
// the request field at fault.
type problem struct {
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Status    int               `json:"status"`
	Detail    string            `json:"detail,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Domain    string            `json:"domain,omitempty"`
	Field     string            `json:"field,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
}

// httpStatus maps gRPC codes to HTTP statuses as grpc-gateway and google.rpc.Code's
// documentation do, so an HTTP caller sees the status a gRPC caller's code implies.
var httpStatus = map[codes.Code]int{
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.FailedPrecondition: http.StatusBadRequest,
	codes.OutOfRange:         http.StatusBadRequest,
	codes.Unauthenticated:    http.StatusUnauthorized,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.NotFound:           http.StatusNotFound,
	codes.AlreadyExists:      http.StatusConflict,
	codes.Aborted:            http.StatusConflict,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
	codes.Canceled:           499, // client closed request
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	codes.Unimplemented:      http.StatusNotImplemented,
	codes.Unavailable:        http.StatusServiceUnavailable,
}

func statusOf(c codes.Code) int {
	if s, ok := httpStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// writeProblem answers f as a problem details object with the HTTP status its code
// maps to, or status when it is not zero.
func writeProblem(w http.ResponseWriter, r *http.Request, f server.Failure, status int) {
	writeProblemType(w, r, f, status, "about:blank")
}

// writeProblemType is writeProblem with a problem type URI other than about:blank.
func writeProblemType(w http.ResponseWriter, r *http.Request, f server.Failure, status int, typ string) {
	if status == 0 {
		status = statusOf(f.Code)
	}
	p := problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: f.Message,
		Reason: f.Reason, Field: f.Field, Metadata: f.Metadata, RequestID: requestID(r.Context())}
	if p.Title == "" {
		p.Title = "Client Closed Request"
	}
	if f.Reason != "" {
		p.Domain = f.Domain()
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agate"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// invalid is a bad request field, as the job service reports one.
func invalid(field, msg string) *jobs.Error {
	return &jobs.Error{Code: jobs.CodeInvalidArgument, Reason: jobs.ReasonInvalidField, Field: field,
		Msg: field + ": " + msg, Meta: map[string]string{"field": field}}
}
