package server

import (
	"iter"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agate-pdp/agate/jobs"
)

// requestCodec is gRPC's proto codec with one difference. grpc-go reports every codec
// error as INTERNAL ("grpc: failed to unmarshal"), yet invalid UTF-8 in a string field
// is the client's fault. So on that error the codec leaves the message empty, records
// the offending field against the message, and reports success; the interceptors take
// the record for every request they see (authUnary, utf8Stream) and refuse it with
// INVALID_ARGUMENT after authentication. Any other decoding error stays INTERNAL, as
// grpc-go has it.
type requestCodec struct {
	base    encoding.CodecV2
	bad     sync.Map     // proto.Message → field path
	records atomic.Int64 // entries in bad: while there are none, take looks nothing up
}

var _ encoding.CodecV2 = (*requestCodec)(nil)

func newRequestCodec() *requestCodec {
	return &requestCodec{base: encoding.GetCodecV2(protocodec.Name)}
}

func (c *requestCodec) Name() string { return protocodec.Name }

func (c *requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c *requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok || !isInvalidUTF8(err) {
		return err
	}
	raw := data.Materialize()
	field, found := invalidUTF8Path(raw, m.ProtoReflect().Descriptor())
	if !found {
		field = "request"
	}
	proto.Reset(m) // nothing half-decoded reaches a handler, should the record be missed
	c.record(v, field)
	return nil
}

// record remembers that v, a decoded message, held invalid UTF-8 in field.
func (c *requestCodec) record(v any, field string) {
	c.records.Add(1)
	c.bad.Store(v, field)
}

// take returns, and forgets, the INVALID_FIELD error of a message the codec found
// invalid UTF-8 in; nil for any other.
func (c *requestCodec) take(v any) error {
	// The record of v, if any, was counted before v's decoding returned, which happened
	// before v reached an interceptor; a count of zero means there is none.
	if v == nil || c.records.Load() == 0 {
		return nil
	}
	field, ok := c.bad.LoadAndDelete(v)
	if !ok {
		return nil
	}
	c.records.Add(-1)
	f := field.(string)
	return &jobs.Error{Code: jobs.CodeInvalidArgument, Reason: jobs.ReasonInvalidField, Field: f,
		Msg: f + ": is not valid UTF-8", Meta: map[string]string{"field": f}}
}

// isInvalidUTF8 recognizes protobuf-go's UTF-8 error by the method it documents.
func isInvalidUTF8(err error) bool {
	for err != nil {
		if u, ok := err.(interface{ InvalidUTF8() bool }); ok && u.InvalidUTF8() {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// invalidUTF8Path finds the first string field of b, a message of type md, that is not
// valid UTF-8, and names it as request validation does: "job.actor", "job.labels.env"
// (a map value, by its key), "job.labels" (a map key, which is not repeated back).
func invalidUTF8Path(b []byte, md protoreflect.MessageDescriptor) (string, bool) {
	for num, v := range bytesFields(b) {
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		name := string(fd.Name())
		switch {
		case fd.IsMap():
			if p, ok := mapEntryPath(v, fd); ok {
				return name + p, true
			}
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name, true
			}
		case fd.Kind() == protoreflect.MessageKind:
			if p, ok := invalidUTF8Path(v, fd.Message()); ok {
				return name + subPath(fd.Message(), p), true
			}
		}
	}
	return "", false
}

// mapEntryPath finds invalid UTF-8 in one map entry: "" for the key (or a value sent
// before its key), ".<key>" or ".<key>.<path>" for the value. Like the decoder, it
// stops at the first problem.
func mapEntryPath(b []byte, fd protoreflect.FieldDescriptor) (string, bool) {
	key, haveKey := "", false
	for num, v := range bytesFields(b) {
		sub, bad := "", false
		switch num {
		case 1:
			if fd.MapKey().Kind() == protoreflect.StringKind {
				if !utf8.Valid(v) {
					return "", true
				}
				key, haveKey = string(v), true
			}
		case 2:
			switch vd := fd.MapValue(); vd.Kind() {
			case protoreflect.StringKind:
				bad = !utf8.Valid(v)
			case protoreflect.MessageKind:
				if p, ok := invalidUTF8Path(v, vd.Message()); ok {
					sub, bad = subPath(vd.Message(), p), true
				}
			}
		}
		if bad && haveKey {
			return "." + key + sub, true
		} else if bad {
			return "", true
		}
	}
	return "", false
}

// bytesFields yields the number and value of each length-delimited field of the wire
// message b, skipping the others; it stops at the first malformed field, so a caller
// that finds nothing reports nothing, as the decoder would have failed anyway.
func bytesFields(b []byte) iter.Seq2[protowire.Number, []byte] {
	return func(yield func(protowire.Number, []byte) bool) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return
			}
			b = b[n:]
			if typ != protowire.BytesType {
				if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
					return
				}
				b = b[n:]
				continue
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			b = b[n:]
			if !yield(num, v) {
				return
			}
		}
	}
}

// subPath is ".path" within a message of type md, or "" inside JSON-like values
// (google.protobuf.Value, Struct, ListValue): a label is named "job.labels.env", not by
// the Value's own fields.
func subPath(md protoreflect.MessageDescriptor, path string) string {
	switch md.FullName() {
	case "google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue":
		return ""
	}
	return "." + path
}

// utf8Stream refuses a streamed message that the codec found invalid UTF-8 in.
type utf8Stream struct {
	grpc.ServerStream
	s *Server
}

func (u *utf8Stream) RecvMsg(m any) error {
	if err := u.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := u.s.codec.take(m); err != nil {
		return toStatus(u.Context(), u.s.log, err)
	}
	return nil
}
