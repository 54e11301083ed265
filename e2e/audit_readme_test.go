package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// auditorBlocks are the shell blocks of the README's "For auditors" section, in order.
// The README must hold exactly these (TestAuditorBlocksMatchReadme); runAuditorCommands
// runs them, changing only the server's address and where files go.
var auditorBlocks = []string{
	`grpcurl() { go tool -modfile=tools.mod grpcurl "$@"; }
grpcurl -plaintext -emit-defaults -H 'authorization: Bearer dev-audit' -d '{"job_id": "pay-0001"}' \
  127.0.0.1:7070 agate.v1.EvidenceService/GetEvidence
`,
	`grpcurl -plaintext -H 'authorization: Bearer dev-audit' \
  -d '{"kind": "approval", "approved_by": "alice@example.com", "page_size": 50}' \
  127.0.0.1:7070 agate.v1.EvidenceService/QueryEvidence
`,
	`grpcurl -plaintext -emit-defaults -H 'authorization: Bearer dev-audit' -d '{}' \
  127.0.0.1:7070 agate.v1.EvidenceService/CheckCompleteness
`,
	`grpcurl -plaintext -H 'authorization: Bearer dev-audit' -d '{"n": 30, "seed": 42}' \
  127.0.0.1:7070 agate.v1.EvidenceService/SampleAudit
`,
	`grpcurl -plaintext -H 'authorization: Bearer dev-audit' -d '{}' \
  127.0.0.1:7070 agate.v1.EvidenceService/ControlMatrix
`,
	`grpcurl -plaintext -H 'authorization: Bearer dev-audit' -d '{}' \
  127.0.0.1:7070 agate.v1.EvidenceService/Stats
`,
	`go run ./cmd/agate evidence public-key --db data/agate.db > evidence-key.pem
grpcurl -plaintext -H 'authorization: Bearer dev-audit' -d '{}' \
  127.0.0.1:7070 agate.v1.EvidenceService/GetPublicKey
`,
	`grpcurl -plaintext -emit-defaults -H 'authorization: Bearer dev-audit' -d '{}' \
  127.0.0.1:7070 agate.v1.EvidenceService/VerifyEvidence
`,
	`grpcurl -plaintext -emit-defaults -H 'authorization: Bearer dev-audit' -d '{}' \
  127.0.0.1:7070 agate.v1.EvidenceService/ExportEvidence > evidence-export.json
go run ./cmd/agate evidence verify --file evidence-export.json --public-key evidence-key.pem
go run ./cmd/agate evidence verify --db data/agate.db --public-key evidence-key.pem
go run ./cmd/agate evidence verify --db data/agate.db --public-key evidence-key.pem --witness data/witness.jsonl
`,
}

// TestAuditorBlocksMatchReadme keeps the README's commands for auditors and the ones
// the tests run identical, once the README has the section.
func TestAuditorBlocksMatchReadme(t *testing.T) {
	t.Parallel()
	readme := readFile(t, filepath.Join(root, "README.md"))
	start, end := strings.Index(readme, "<!-- auditors -->"), strings.Index(readme, "<!-- /auditors -->")
	if start < 0 {
		t.Skip("README.md has no <!-- auditors --> section yet")
	}
	if end < start {
		t.Fatal("README.md: <!-- auditors --> without <!-- /auditors -->")
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme[start:end], -1) {
		blocks = append(blocks, m[1])
	}
	if !slices.Equal(blocks, auditorBlocks) {
		t.Errorf("README's auditor commands differ from the tested ones:\n%s", strings.Join(blocks, "---\n"))
	}
}

// runAuditorCommands runs the auditor blocks against a, whose database is db, and
// checks what they print against the workload's counts.
func runAuditorCommands(t *testing.T, a *agate, db string, tl *tally) {
	t.Helper()
	dir := t.TempDir()
	fn := strings.SplitN(auditorBlocks[0], "\n", 2)[0]
	fix := strings.NewReplacer("127.0.0.1:7070", a.grpcAddr, "data/agate.db", db,
		"data/witness.jsonl", filepath.Join(filepath.Dir(db), "witness.jsonl"),
		"evidence-key.pem", filepath.Join(dir, "evidence-key.pem"),
		"evidence-export.json", filepath.Join(dir, "evidence-export.json"))
	run := func(i int) (string, error) {
		script := fix.Replace(auditorBlocks[i])
		if i > 0 {
			script = fn + "\n" + script
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("block %d: %v\n%s", i, err, out)
		}
		return string(out), nil
	}
	outs := make([]string, len(auditorBlocks))
	errs := make([]error, len(auditorBlocks))
	var wg sync.WaitGroup
	last := len(auditorBlocks) - 1
	for i := range last { // independent of each other; the last needs the pinned key
		wg.Go(func() { outs[i], errs[i] = run(i) })
	}
	wg.Wait()
	outs[last], errs[last] = run(last)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	decode := func(i int) map[string]any {
		t.Helper()
		var m map[string]any
		text := outs[i][strings.Index(outs[i], "{"):]
		if err := json.NewDecoder(strings.NewReader(text)).Decode(&m); err != nil {
			t.Fatalf("block %d printed no JSON: %v\n%s", i, err, outs[i])
		}
		return m
	}

	// The summary record opens with the reference event's keys, in its order.
	keys := regexp.MustCompile(`(?m)^    "([a-z_]+)":`).FindAllStringSubmatch(outs[0][strings.Index(outs[0], `"summary"`):], 10)
	var got []string
	for _, k := range keys {
		got = append(got, k[1])
	}
	ref := []string{"job_id", "trace_id", "decision", "approval_required", "policy_snapshot", "job_hash",
		"approved_by", "approved_role", "approved_at", "status"}
	if !slices.Equal(got, ref) {
		t.Errorf("GetEvidence summary keys %v, want the reference event's %v\n%s", got, ref, outs[0])
	}
	if evs, _ := decode(0)["events"].([]any); len(evs) == 0 {
		t.Errorf("GetEvidence printed no events:\n%s", outs[0])
	}
	q, _ := decode(1)["events"].([]any)
	for _, e := range q {
		if m := e.(map[string]any); m["kind"] != "approval" || m["approved_by"] != "alice@example.com" {
			t.Errorf("QueryEvidence returned %v", m)
		}
	}
	if len(q) == 0 {
		t.Errorf("QueryEvidence found none of alice's approvals:\n%s", outs[1])
	}
	if c := decode(2); c["findings"] == nil || len(c["findings"].([]any)) != 0 || c["events_checked"] != fmt.Sprint(tl.total()) {
		t.Errorf("CheckCompleteness printed %v, want no findings over %d events", c, tl.total())
	}
	if s, _ := decode(3)["summary"].(map[string]any); s["sampled"] != float64(30) || s["passed"] != float64(30) || s["failed"] != nil {
		t.Errorf("SampleAudit summary %v", s)
	}
	if cs, _ := decode(4)["controls"].([]any); len(cs) != 4 {
		t.Errorf("ControlMatrix printed %v", outs[4])
	}
	if st := decode(5); st["already_approved"] != fmt.Sprint(tl.alreadyApproved) {
		t.Errorf("Stats printed %v, counted %d already_approved", st, tl.alreadyApproved)
	}
	pinned := readFile(t, filepath.Join(dir, "evidence-key.pem"))
	keyID := regexp.MustCompile(`# key_id: (\S+)`).FindStringSubmatch(pinned)
	if keyID == nil || decode(6)["key_id"] != keyID[1] {
		t.Errorf("GetPublicKey does not name the pinned key %s:\n%s", pinned, outs[6])
	}
	if v := decode(7); v["ok"] != true || v["problems"] == nil || len(v["problems"].([]any)) != 0 {
		t.Errorf("VerifyEvidence printed %v", v)
	}
	if strings.Count(outs[8], "ok: verified ") != 3 || !strings.Contains(outs[8], " witness records") {
		t.Errorf("agate evidence verify (file, database, database with the witness):\n%s", outs[8])
	}
}
