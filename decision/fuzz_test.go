package decision

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// naiveEvaluate is the reference evaluator: a plain scan of every rule in
// policy order, with topic patterns matched by splitting strings. The
// compiled index must agree with it on every job.
func naiveEvaluate(p *Policy, j *Job) (Result, error) {
	if j == nil {
		return Result{}, errNilJob
	}
	if err := ValidateTopic(j.Topic); err != nil {
		return Result{}, err
	}
	names := make([]string, 0, len(j.Labels))
	for name := range j.Labels {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, msg := scalarOf(j.Labels[name]); msg != "" {
			return Result{}, &LabelError{Label: name, Msg: msg}
		}
	}
	for _, name := range p.labelNames {
		spec := p.labels[name]
		v, ok := j.Labels[name]
		if !ok {
			if spec.required {
				return Result{}, &LabelError{Label: name, Msg: "is required"}
			}
			continue
		}
		s, _ := scalarOf(v)
		if s.k != spec.kind {
			return Result{}, &LabelError{Label: name, Msg: fmt.Sprintf("value %s is a %s; want a %s", s, s.k, spec.kind)}
		}
		if !spec.allows(s) {
			return Result{}, &LabelError{Label: name, Msg: fmt.Sprintf("value %s is not allowed (%s)", s, describeSpec(spec))}
		}
	}
	var matched []rule
	for _, r := range p.rules {
		if naiveMatches(p, r, j) {
			matched = append(matched, r)
		}
	}
	if len(matched) == 0 {
		res := Result{Decision: p.Default(), RuleID: "default", Reason: "no rule matched; policy default is " + p.Default().String()}
		if res.Decision == RequireHuman {
			res.Approval = p.defaults
		}
		return res, nil
	}
	res := Result{}
	for _, want := range []Decision{Deny, RequireHuman, Allow} {
		if k := slices.IndexFunc(matched, func(r rule) bool { return r.decision == want }); k >= 0 {
			r := matched[k]
			res = Result{Decision: r.decision, RuleID: r.id, Reason: r.reason}
			if r.decision == RequireHuman {
				res.Approval = r.approval
			}
			break
		}
	}
	for _, r := range matched {
		res.Matched = append(res.Matched, r.id)
	}
	return res, nil
}

func naiveMatches(p *Policy, r rule, j *Job) bool {
	if r.topics != nil && !slices.ContainsFunc(r.topics, func(t topicPattern) bool { return naiveTopicMatch(t.raw, j.Topic) }) {
		return false
	}
	for _, c := range r.conds {
		v, ok := j.Labels[c.label]
		var s scalar
		switch spec := p.labels[c.label]; {
		case ok:
			s, _ = scalarOf(v)
		case spec != nil && spec.hasDefault:
			s = spec.def
		default:
			return false
		}
		if !slices.ContainsFunc(c.vals, s.equal) {
			return false
		}
	}
	return true
}

func naiveTopicMatch(pattern, topic string) bool {
	pt, tt := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range pt {
		if p == ">" {
			return len(tt) > i
		}
		if i >= len(tt) || p != "*" && p != tt[i] {
			return false
		}
	}
	return len(pt) == len(tt)
}

// fuzzPolicies are the fixed policies FuzzEvaluate draws from when its own
// policy input does not parse; the last one is heavy on overlapping wildcards.
var fuzzPolicies = []string{
	"version: v1\n",
	matchPolicy,
	`version: v1
default: require_human
labels:
  k: {type: string, enum: [a, b, c], default: a}
  n: {type: number}
  f: {type: bool, default: false}
rules:
  - {id: r0, when: {topic: ">"}, decision: allow}
  - {id: r1, when: {topic: "a.>"}, decision: require_human}
  - {id: r2, when: {topic: "a.*"}, decision: deny}
  - {id: r3, when: {topic: "*.b"}, decision: deny, reason: star first}
  - {id: r4, when: {topic: "*.*.c", k: [a, b]}, decision: require_human, approval: {roles: [x], quorum: 3}}
  - {id: r5, when: {topic: [a.b, "a.*", "a.>"]}, decision: allow}
  - {id: r6, when: {topic: a.b.c, n: [1, 2.5, -3]}, decision: deny}
  - {id: r7, when: {k: c, f: true}, decision: deny}
  - {id: r8, when: {topic: "*"}, decision: allow}
  - {id: r9, when: {topic: "*.>", f: false}, decision: require_human}
  - {id: r10, when: {topic: [b, "b.*.*"], n: 0}, decision: allow}
`,
}

// fuzzTokens builds topics likely to hit the patterns above.
var fuzzTokens = []string{"a", "b", "c", "w", "x", "run", "scalar", "anyof", "typed", "number", "default", "missing", "ж", "y", "z", "q"}

func fuzzJob(path []byte, rawTopic, k1, v1, k2 string, num float64, flag bool, mode uint8) *Job {
	topic := rawTopic
	if topic == "" && len(path) > 0 {
		toks := make([]string, 0, len(path))
		for _, b := range path[:min(len(path), 12)] {
			toks = append(toks, fuzzTokens[int(b)%len(fuzzTokens)])
		}
		topic = strings.Join(toks, ".")
	}
	lab := map[string]any{}
	if k1 != "" {
		lab[k1] = v1
	}
	if k2 != "" {
		switch mode % 7 {
		case 0:
			lab[k2] = num
		case 1:
			lab[k2] = flag
		case 2:
			lab[k2] = int(num)
		case 3:
			lab[k2] = int64(num)
		case 4:
			lab[k2] = []any{num}
		case 5:
			lab[k2] = nil
		case 6:
			lab[k2] = fmt.Sprint(flag)
		}
	}
	if mode&8 != 0 {
		lab = nil
	}
	return &Job{Topic: topic, Actor: "fuzz", Labels: lab}
}

func FuzzEvaluate(f *testing.F) {
	f.Add("", uint8(2), []byte{0, 1, 2}, "", "k", "c", "n", 1.0, true, uint8(0))
	f.Add("", uint8(1), []byte{3, 17}, "", "env", "production", "scope_validated", 0.0, false, uint8(1))
	f.Add("", uint8(1), []byte{}, "c.x", "env", "staging", "amount", 1.0, false, uint8(2))
	f.Add("", uint8(1), []byte{4, 7, 5}, "", "tier", "gold", "", 0.0, false, uint8(8))
	f.Add("", uint8(0), []byte{}, "a..b", "", "", "", 0.0, false, uint8(0))
	f.Add("version: v1\nrules:\n  - {id: x, when: {topic: \"a.>\", k: [1, \"1\", true]}, decision: deny}\n",
		uint8(0), []byte{0, 0}, "", "k", "1", "k2", 1.0, true, uint8(2))
	f.Fuzz(func(t *testing.T, src string, sel uint8, path []byte, rawTopic, k1, v1, k2 string, num float64, flag bool, mode uint8) {
		p, err := Parse([]byte(src))
		if err != nil {
			if p, err = Parse([]byte(fuzzPolicies[int(sel)%len(fuzzPolicies)])); err != nil {
				t.Fatal(err)
			}
		}
		e, err := Compile(p)
		if err != nil {
			t.Fatalf("Compile: %v", err)
		}
		job := fuzzJob(path, rawTopic, k1, v1, k2, num, flag, mode)
		got, gotErr := e.Evaluate(job)
		want, wantErr := naiveEvaluate(p, job)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("job %+v\nindex error %v\nnaive error %v", job, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("job %+v\nindex %+v\nnaive %+v", job, got, want)
		}
		var le *LabelError
		if gotErr != nil && !errors.As(gotErr, &le) && !errors.Is(gotErr, ErrInvalidTopic) {
			t.Fatalf("unexpected error type %T: %v", gotErr, gotErr)
		}
		if gotErr == nil && (got.Decision == RequireHuman) != (got.Approval.Quorum >= 1 && len(got.Approval.Roles) > 0) {
			t.Fatalf("approval %+v with decision %v", got.Approval, got.Decision)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/reference.yaml", "../examples/policy.yaml"} {
		if src, err := os.ReadFile(name); err == nil {
			f.Add(src)
		}
	}
	for _, src := range fuzzPolicies {
		f.Add([]byte(src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse(src)
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *PolicyError", err, err)
			}
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			return
		}
		e, err := Compile(p)
		if err != nil {
			t.Fatalf("Parse accepted a policy that Compile refused: %v", err)
		}
		if e.RuleCount() != p.RuleCount() {
			t.Fatalf("engine has %d rules, policy %d", e.RuleCount(), p.RuleCount())
		}
		for _, w := range p.Warnings() {
			if w.RuleID == "" || w.Label == "" || w.Line < 1 {
				t.Fatalf("incomplete warning %+v", w)
			}
		}
		job := &Job{Topic: "a.b.c", Labels: map[string]any{"env": "production", "n": 1.0}}
		got, gotErr := e.Evaluate(job)
		want, wantErr := naiveEvaluate(p, job)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("index %+v, %v; naive %+v, %v", got, gotErr, want, wantErr)
		}
	})
}
