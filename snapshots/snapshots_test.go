package snapshots

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func reference(t *testing.T) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "decision", "testdata", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"a: 1":             "a: 1\n",
		"a: 1\n":           "a: 1\n",
		"a: 1\n\n\n":       "a: 1\n",
		"a: 1\r\nb: 2\r\n": "a: 1\nb: 2\n",
	}
	for in, want := range tests {
		if got := string(Canonical([]byte(in))); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewIsContentAddressed(t *testing.T) {
	t.Parallel()
	src := reference(t)
	now := time.Date(2026, 4, 1, 17, 0, 0, 123456789, time.UTC)
	a, eng, _, err := New(src, "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if eng == nil || a.RuleCount != 2 || a.CreatedBy != "alice" || !a.CreatedAt.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("snapshot = %+v", a)
	}
	if len(a.SHA256) != 64 || a.ID != "snap_"+a.SHA256[:16] {
		t.Fatalf("id %q does not derive from sha256 %q", a.ID, a.SHA256)
	}
	// The same content with other line endings is the same snapshot.
	b, _, _, err := New([]byte(strings.ReplaceAll(string(src), "\n", "\r\n")), "bob", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != a.ID || b.SHA256 != a.SHA256 {
		t.Fatalf("same content, different snapshot: %s vs %s", a.ID, b.ID)
	}
	// Any real change is a different snapshot.
	c, _, _, err := New(append(src, []byte("# comment\n")...), "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == a.ID {
		t.Fatal("changed content kept the same id")
	}
	if err := a.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestNewRejectsBadPolicy(t *testing.T) {
	t.Parallel()
	if _, _, _, err := New([]byte("version: v2\nrules: []\n"), "x", time.Now()); err == nil {
		t.Fatal("accepted version v2")
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	s, _, _, err := New(reference(t), "x", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Snapshot){
		"source": func(s *Snapshot) { s.Source = append([]byte("# x\n"), s.Source...) },
		"sha":    func(s *Snapshot) { s.SHA256 = strings.Repeat("0", 64) },
		"id":     func(s *Snapshot) { s.ID = "snap_0000000000000000" },
	} {
		bad := s
		bad.Source = append([]byte(nil), s.Source...)
		mutate(&bad)
		if err := bad.Verify(); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Verify = %v, want ErrMismatch", name, err)
		}
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	if _, err := NewCache(0); err == nil {
		t.Fatal("accepted size 0")
	}
	c, err := NewCache(1)
	if err != nil {
		t.Fatal(err)
	}
	a, _, _, _ := New(reference(t), "x", time.Now())
	b, _, _, _ := New(append(reference(t), []byte("# b\n")...), "x", time.Now())
	ea, err := c.Engine(a)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Engine(a); again != ea {
		t.Fatal("cache hit returned a different engine")
	}
	if _, err := c.Engine(b); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (size bound)", c.Len())
	}
	if again, _ := c.Engine(a); again == ea {
		t.Fatal("evicted snapshot was not recompiled")
	}
	bad := a
	bad.ID = "snap_ffffffffffffffff"
	if _, err := c.Engine(bad); !errors.Is(err, ErrMismatch) {
		t.Fatalf("tampered snapshot compiled: %v", err)
	}
}

func TestTracker(t *testing.T) {
	t.Parallel()
	mem := NewMemory()
	cache, _ := NewCache(4)
	tr := NewTracker(mem, cache, nil)
	if _, ok := tr.Current(); ok {
		t.Fatal("current before any refresh")
	}
	if _, err := tr.Refresh(context.Background()); !errors.Is(err, ErrNoActive) {
		t.Fatalf("Refresh = %v, want ErrNoActive", err)
	}
	a, _, _, _ := New(reference(t), "x", time.Now())
	b, eb, _, _ := New(append(reference(t), []byte("# b\n")...), "x", time.Now())
	mem.Put(a, true)
	got, err := tr.Refresh(context.Background())
	if err != nil || got.Snapshot.ID != a.ID {
		t.Fatalf("Refresh = %v, %v", got, err)
	}
	tr.Set(b, eb)
	if cur, _ := tr.Current(); cur.Snapshot.ID != b.ID || cur.Engine != eb {
		t.Fatal("Set did not install the snapshot")
	}

	// Run follows the source in the background.
	mem.Put(a, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx, time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cur, _ := tr.Current(); cur.Snapshot.ID == a.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the new active snapshot")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

// slowSource answers ActiveSnapshot with what was active when the call began, after
// the test lets it go: a read that overlaps an activation.
type slowSource struct {
	answer  Snapshot
	started chan struct{}
	release chan struct{}
}

func (s *slowSource) ActiveSnapshot(context.Context) (Snapshot, error) {
	close(s.started)
	<-s.release
	return s.answer, nil
}

// A refresh whose read began before this replica activated a snapshot must not put
// the older snapshot back.
func TestRefreshDoesNotUndoSet(t *testing.T) {
	t.Parallel()
	cache, err := NewCache(4)
	if err != nil {
		t.Fatal(err)
	}
	oldSnap, _, _, err := New([]byte("version: v1\nrules: []\n"), "", time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	newSnap, newEng, _, err := New([]byte("version: v1\ndefault: deny\nrules: []\n"), "", time.Unix(2, 0))
	if err != nil {
		t.Fatal(err)
	}
	src := &slowSource{answer: oldSnap, started: make(chan struct{}), release: make(chan struct{})}
	tr := NewTracker(src, cache, nil)
	done := make(chan error)
	go func() { _, err := tr.Refresh(context.Background()); done <- err }()
	<-src.started
	tr.Set(newSnap, newEng)
	close(src.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a, _ := tr.Current(); a.Snapshot.ID != newSnap.ID {
		t.Fatalf("active %s after a refresh that overlapped Set, want %s", a.Snapshot.ID, newSnap.ID)
	}
}
