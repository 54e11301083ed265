package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/agate-pdp/agate/jobs"
)

// errorDomain is the google.rpc.ErrorInfo domain of every Agate error.
const errorDomain = "agate.dev"

// accessError is an authentication or authorization failure decided by the server.
type accessError struct {
	unauthenticated bool
	reason, msg     string
}

func (e *accessError) Error() string { return e.msg }

var jobCodes = map[jobs.Code]codes.Code{
	jobs.CodeInvalidArgument:    codes.InvalidArgument,
	jobs.CodeNotFound:           codes.NotFound,
	jobs.CodePermissionDenied:   codes.PermissionDenied,
	jobs.CodeAborted:            codes.Aborted,
	jobs.CodeFailedPrecondition: codes.FailedPrecondition,
	jobs.CodeUnavailable:        codes.Unavailable,
	jobs.CodeAlreadyExists:      codes.AlreadyExists,
	jobs.CodeResourceExhausted:  codes.ResourceExhausted,
	jobs.CodeDataLoss:           codes.DataLoss,
}

// toStatus is the one place where errors become gRPC statuses. Known errors carry a
// google.rpc.ErrorInfo with their reason and metadata (expected and actual hash or
// snapshot, the offending field); anything else is logged and reported as INTERNAL
// without detail, so internals never reach clients.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	f := Classify(ctx, log, err)
	if f.Reason == "" {
		return status.Error(f.Code, f.Message)
	}
	return withInfo(f.Code, f.Message, f.Reason, f.Metadata, f.Field)
}

// Failure is an error as a client is told it, whatever the transport: gRPC sends it as
// a status with a google.rpc.ErrorInfo, HTTP as a problem details object.
type Failure struct {
	Code     codes.Code
	Reason   string // the ErrorInfo reason; empty for deadline, cancellation and internal errors
	Message  string // safe to show the caller
	Field    string // the request field at fault, for INVALID_FIELD
	Metadata map[string]string
}

// Domain is the ErrorInfo domain of every Agate error.
func (Failure) Domain() string { return errorDomain }

// Classify is the one mapping from errors to what a client is told. Internal errors
// are logged here and reported without detail.
func Classify(ctx context.Context, log *slog.Logger, err error) Failure {
	if st, ok := status.FromError(err); ok && err != nil {
		f := Failure{Code: st.Code(), Message: st.Message()}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				f.Reason, f.Metadata = info.GetReason(), info.GetMetadata()
				f.Field = f.Metadata["field"]
			}
		}
		return f
	}
	var je *jobs.Error
	var ae *accessError
	switch {
	case errors.As(err, &je):
		code, ok := jobCodes[je.Code]
		if !ok {
			break
		}
		meta := map[string]string{}
		for k, v := range je.Meta {
			meta[k] = v
		}
		if je.Field != "" {
			meta["field"] = je.Field
		}
		return Failure{Code: code, Reason: je.Reason, Message: je.Msg, Field: je.Field,
			Metadata: documented(ctx, log, je.Reason, meta)}
	case errors.As(err, &ae):
		code := codes.PermissionDenied
		if ae.unauthenticated {
			code = codes.Unauthenticated
		}
		return Failure{Code: code, Reason: ae.reason, Message: ae.msg}
	case errors.Is(err, context.DeadlineExceeded):
		return Failure{Code: codes.DeadlineExceeded, Message: "deadline exceeded"}
	case errors.Is(err, context.Canceled):
		return Failure{Code: codes.Canceled, Message: "request cancelled"}
	}
	log.ErrorContext(ctx, "internal error", "err", err)
	return Failure{Code: codes.Internal, Message: "internal error"}
}

func withInfo(code codes.Code, msg, reason string, meta map[string]string, field string) error {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta}}
	if field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: field, Description: msg},
		}})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}
