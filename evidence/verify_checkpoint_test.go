package evidence

import "testing"

// A sealed head whose event is gone is a truncation only when nothing follows it;
// with later events it is a gap, which the chain's own check reports once.
func TestCheckHeadGapIsNotTruncation(t *testing.T) {
	t.Parallel()
	h := Head{JobID: "j", Seq: 2, Hash: "sha256:two"}
	gap := []Event{{Seq: 1, Hash: "sha256:one"}, {Seq: 3, Hash: "sha256:three"}}
	if p, found := checkHead("j", h, gap); found {
		t.Errorf("gap under a sealed head: %+v, want nothing from the head check", p)
	}
	truncated := []Event{{Seq: 1, Hash: "sha256:one"}}
	if p, found := checkHead("j", h, truncated); !found || p.Kind != Deleted {
		t.Errorf("truncated chain: %+v (found %v), want Deleted", p, found)
	}
}
