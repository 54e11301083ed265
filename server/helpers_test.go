package server

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"google.golang.org/grpc"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func isEvidence(m string) bool { return strings.HasPrefix(m, "/agate.v1.EvidenceService/") }

func allMethods() []string {
	var out []string
	for _, sd := range []struct {
		name    string
		methods []string
	}{
		{agatev1.DecisionService_ServiceDesc.ServiceName, names(agatev1.DecisionService_ServiceDesc.Methods)},
		{agatev1.PolicyService_ServiceDesc.ServiceName, names(agatev1.PolicyService_ServiceDesc.Methods)},
	} {
		for _, m := range sd.methods {
			out = append(out, "/"+sd.name+"/"+m)
		}
	}
	return out
}

func names(ms []grpc.MethodDesc) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.MethodName
	}
	return out
}
