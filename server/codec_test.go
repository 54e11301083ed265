package server

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store"
)

// rawCodec sends hand-built wire bytes: the Go client refuses to marshal invalid UTF-8.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// field appends field name of md holding raw bytes (a string or a sub-message).
func field(b []byte, md protoreflect.MessageDescriptor, name string, raw []byte) []byte {
	fd := md.Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic("no field " + name)
	}
	b = protowire.AppendTag(b, fd.Number(), protowire.BytesType)
	return protowire.AppendBytes(b, raw)
}

// label is a labels map entry whose value is a google.protobuf.Value string.
func label(k, v string) []byte {
	value := field(nil, (&structpb.Value{}).ProtoReflect().Descriptor(), "string_value", []byte(v))
	var e []byte
	e = protowire.AppendTag(e, 1, protowire.BytesType)
	e = protowire.AppendString(e, k)
	e = protowire.AppendTag(e, 2, protowire.BytesType)
	return protowire.AppendBytes(e, value)
}

// decideWith is a valid Decide request for jobID with extra Job fields appended: a
// repeated sub-message merges into the first, so the extra fields win.
func decideWith(t *testing.T, jobID string, extra func(job []byte, md protoreflect.MessageDescriptor) []byte) []byte {
	t.Helper()
	valid, err := proto.Marshal(&agatev1.DecideRequest{Job: &agatev1.Job{JobId: jobID, Topic: "a.b", Actor: "agent",
		Labels: map[string]*structpb.Value{"env": structpb.NewStringValue("dev")}}})
	if err != nil {
		t.Fatal(err)
	}
	jobMD := (&agatev1.Job{}).ProtoReflect().Descriptor()
	return field(valid, (&agatev1.DecideRequest{}).ProtoReflect().Descriptor(), "job", extra(nil, jobMD))
}

// Invalid UTF-8 anywhere in a request is INVALID_ARGUMENT naming the field, after
// authentication, and writes nothing; never INTERNAL.
func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, `principals:
  - id: svc
    roles: [decide]
    tokens_sha256: ["`+sha("tok-decide")+`"]
`)
	srv, addr := serve(t, cfg)
	conn := dial(t, addr, nil)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tok-decide")

	// A decided job, for the calls that name one.
	dec := agatev1.NewDecisionServiceClient(conn)
	d, err := dec.Decide(ctx, &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "j-1", Topic: "a.b", Actor: "agent"}})
	if err != nil {
		t.Fatal(err)
	}
	approveMD := (&agatev1.ApproveRequest{}).ProtoReflect().Descriptor()
	cancelMD := (&agatev1.CancelRequest{}).ProtoReflect().Descriptor()
	tests := []struct {
		name, method string
		body         []byte
		anonymous    bool
		field        string // "" = refused before validation
		job          string // must have no more events than before
	}{
		{"actor", "/agate.v1.DecisionService/Decide", decideWith(t, "j-2", func(b []byte, md protoreflect.MessageDescriptor) []byte {
			return field(b, md, "actor", []byte("ag\xffent"))
		}), false, "job.actor", "j-2"},
		{"topic", "/agate.v1.DecisionService/Decide", decideWith(t, "j-3", func(b []byte, md protoreflect.MessageDescriptor) []byte {
			return field(b, md, "topic", []byte("a.\xc3"))
		}), false, "job.topic", "j-3"},
		{"label value", "/agate.v1.DecisionService/Decide", decideWith(t, "j-4", func(b []byte, md protoreflect.MessageDescriptor) []byte {
			return field(b, md, "labels", label("env", "prod\xed\xa0\x80")) // an encoded surrogate
		}), false, "job.labels.env", "j-4"},
		{"label key", "/agate.v1.DecisionService/Decide", decideWith(t, "j-5", func(b []byte, md protoreflect.MessageDescriptor) []byte {
			return field(b, md, "labels", label("e\xffnv", "prod"))
		}), false, "job.labels", "j-5"},
		{"job id", "/agate.v1.DecisionService/Decide", decideWith(t, "j-6", func(b []byte, md protoreflect.MessageDescriptor) []byte {
			return field(b, md, "job_id", []byte("j-\xff"))
		}), false, "job.job_id", "j-6"},
		{"approve reason", "/agate.v1.DecisionService/Approve",
			field(field(nil, approveMD, "job_id", []byte("j-1")), approveMD, "reason", []byte("ok\xff")), false, "reason", "j-1"},
		{"approve hash", "/agate.v1.DecisionService/Approve",
			field(field(nil, approveMD, "job_id", []byte("j-1")), approveMD, "job_hash", []byte(d.GetJobHash()+"\xff")), false, "job_hash", "j-1"},
		{"cancel reason", "/agate.v1.DecisionService/Cancel",
			field(field(nil, cancelMD, "job_id", []byte("j-1")), cancelMD, "reason", []byte("\x80")), false, "reason", "j-1"},
		{"anonymous", "/agate.v1.DecisionService/Cancel",
			field(field(nil, cancelMD, "job_id", []byte("j-1")), cancelMD, "reason", []byte("\x80")), true, "", "j-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := events(t, cfg.Store, tc.job)
			callCtx := ctx
			if tc.anonymous {
				callCtx = context.Background()
			}
			var reply []byte
			err := conn.Invoke(callCtx, tc.method, tc.body, &reply, grpc.ForceCodecV2(rawCodec{}))
			if tc.field == "" {
				wantCode(t, err, codes.Unauthenticated)
			} else {
				wantField(t, err, tc.field)
			}
			if after := events(t, cfg.Store, tc.job); after != before {
				t.Errorf("job %s: %d events before, %d after", tc.job, before, after)
			}
		})
	}

	// Public methods too, unary and streaming.
	hmd := (&healthpb.HealthCheckRequest{}).ProtoReflect().Descriptor()
	bad := field(nil, hmd, "service", []byte("\xff"))
	var reply []byte
	err = conn.Invoke(context.Background(), "/grpc.health.v1.Health/Check", bad, &reply, grpc.ForceCodecV2(rawCodec{}))
	wantField(t, err, "service")
	st, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(bad); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	wantField(t, st.RecvMsg(&reply), "service")

	// The codec keeps no record once the requests are answered.
	n := 0
	srv.codec.bad.Range(func(any, any) bool { n++; return true })
	if n != 0 || srv.codec.records.Load() != 0 {
		t.Errorf("%d invalid-UTF-8 records left behind, %d counted", n, srv.codec.records.Load())
	}
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 && br.FieldViolations[0].Field == field {
			return
		}
	}
	t.Fatalf("err = %v (details %v), want field %s named", err, st.Details(), field)
}

func events(t *testing.T, st store.Store, jobID string) int {
	t.Helper()
	var n int
	err := st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		es, err := tx.ListEvents(ctx, jobID)
		n = len(es)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInvalidUTF8Path(t *testing.T) {
	t.Parallel()
	jobMD := (&agatev1.Job{}).ProtoReflect().Descriptor()
	reqMD := (&agatev1.DecideRequest{}).ProtoReflect().Descriptor()
	for want, b := range map[string][]byte{
		"job.actor":      field(nil, reqMD, "job", field(field(nil, jobMD, "topic", []byte("a.b")), jobMD, "actor", []byte("\xff"))),
		"job.labels.env": field(nil, reqMD, "job", field(nil, jobMD, "labels", label("env", "\xff"))),
		"job.labels":     field(nil, reqMD, "job", field(nil, jobMD, "labels", label("\xff", "x"))),
		"":               field(nil, reqMD, "job", field(nil, jobMD, "actor", []byte("fine"))),
	} {
		got, ok := invalidUTF8Path(b, reqMD)
		if got != want || ok != (want != "") {
			t.Errorf("invalidUTF8Path = %q, %v; want %q", got, ok, want)
		}
	}
	// Truncated input is no path, not a panic.
	if _, ok := invalidUTF8Path([]byte{0x0a, 0x05, 0x12}, reqMD); ok {
		t.Error("found a path in truncated input")
	}
}

// FuzzInvalidUTF8Path: whenever protobuf-go refuses a request for invalid UTF-8, the
// walker names a field; and it never panics.
func FuzzInvalidUTF8Path(f *testing.F) {
	jobMD := (&agatev1.Job{}).ProtoReflect().Descriptor()
	reqMD := (&agatev1.DecideRequest{}).ProtoReflect().Descriptor()
	f.Add(field(nil, reqMD, "job", field(nil, jobMD, "actor", []byte("\xff"))))
	f.Add(field(nil, reqMD, "job", field(nil, jobMD, "labels", label("env", "\xff"))))
	f.Add(field(nil, reqMD, "job", field(nil, jobMD, "labels", label("\xff", "x"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		path, found := invalidUTF8Path(b, reqMD)
		if err := proto.Unmarshal(b, &agatev1.DecideRequest{}); isInvalidUTF8(err) && !found {
			t.Fatalf("protobuf-go: %v; the walker found no field", err)
		} else if found && path == "" {
			t.Fatal("found an empty path")
		}
	})
}

// A request refused before authentication (the server is still starting) leaves no
// record of its invalid UTF-8 behind: the codec's table cannot grow without bound.
func TestStartingServerForgetsCodecRecords(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{Auth: NewAuthenticator(must(LoadIdentities(writeTokens(t, authTokens)))(t))})
	if err != nil {
		t.Fatal(err)
	}
	req := &agatev1.ApproveRequest{}
	srv.codec.record(req, "reason")
	_, err = srv.attachedUnary(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/agate.v1.DecisionService/Approve"},
		func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want UNAVAILABLE while starting", err)
	}
	if _, kept := srv.codec.bad.Load(req); kept || srv.codec.records.Load() != 0 {
		t.Fatal("the codec's record outlived a request refused while starting")
	}
}
