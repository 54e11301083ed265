package server

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// TestJSONNamesAreProtoNames guards the API-wide rule that JSON keys are the proto
// field names: auditors' grpcurl output and exports must use the reference event's keys.
func TestJSONNamesAreProtoNames(t *testing.T) {
	t.Parallel()
	files := []protoreflect.FileDescriptor{
		agatev1.File_agate_v1_job_proto, agatev1.File_agate_v1_decision_service_proto,
		agatev1.File_agate_v1_policy_service_proto, agatev1.File_agate_v1_evidence_proto,
		agatev1.File_agate_v1_evidence_service_proto,
	}
	var check func(md protoreflect.MessageDescriptor)
	count := 0
	check = func(md protoreflect.MessageDescriptor) {
		if md.IsMapEntry() {
			return
		}
		for i := 0; i < md.Fields().Len(); i++ {
			f := md.Fields().Get(i)
			count++
			if f.JSONName() != string(f.Name()) {
				t.Errorf("%s: json_name %q, want %q", f.FullName(), f.JSONName(), f.Name())
			}
		}
		for i := 0; i < md.Messages().Len(); i++ {
			check(md.Messages().Get(i))
		}
	}
	for _, fd := range files {
		for i := 0; i < fd.Messages().Len(); i++ {
			check(fd.Messages().Get(i))
		}
	}
	if count < 100 {
		t.Fatalf("checked only %d fields", count)
	}
}
