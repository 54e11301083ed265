package authzen

import (
	"strings"
	"testing"

	"github.com/agate-pdp/agate/jobs"
)

// TestMACKeys: an evaluation_id verifies under the key that made it and, during a
// rotation, under the new key with the old one as From; not under another key, and
// not with its payload or MAC changed. A task id depends on the current key only, and the
// two uses' keys differ.
func TestMACKeys(t *testing.T) {
	t.Parallel()
	oldRoot, newRoot := []byte(strings.Repeat("a", 32)), []byte(strings.Repeat("b", 32))
	must := func(s Secret) *macKeys {
		k, err := deriveKeys(s)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	old, rotating, fresh := must(Secret{Key: oldRoot}), must(Secret{Key: newRoot, From: oldRoot}), must(Secret{Key: newRoot})
	id := old.signEval("cGF5bG9hZA")
	for _, c := range []struct {
		name string
		k    *macKeys
		id   string
		ok   bool
	}{
		{"the key that made it", old, id, true},
		{"rotating from it", rotating, id, true},
		{"another key", fresh, id, false},
		{"payload changed", old, strings.Replace(id, "cGF5", "cGF6", 1), false},
		{"MAC cut", old, id[:len(id)-2], false},
		{"no MAC", old, "eval_cGF5bG9hZA", false},
		{"MAC of the task-id key", old, "eval_cGF5bG9hZA." + strings.Split(fresh.signEval("x"), ".")[1], false},
	} {
		if payload, ok := c.k.openEval(c.id); ok != c.ok || (ok && payload != "cGF5bG9hZA") {
			t.Errorf("%s: %q %v, want %v", c.name, payload, ok, c.ok)
		}
	}
	if string(old.task) == string(old.eval[0]) {
		t.Fatal("the task-id and evaluation-id keys are the same")
	}
	p := jobs.Principal{ID: "pep-arap"}
	a, _ := old.taskID(p, "k")
	b, _ := fresh.taskID(p, "k")
	d, _ := rotating.taskID(p, "k")
	if a == b || b != d || !strings.HasPrefix(a, taskPrefix) || len(a) != len(taskPrefix)+32 {
		t.Fatalf("task ids: %s %s %s", a, b, d)
	}
}
