package decision

import (
	"errors"
	"fmt"
)

// PolicyError is a problem in a policy or case file, located by line and
// field path (for example rules[1].when.env). Parse joins several with
// errors.Join; errors.As yields the first.
type PolicyError struct {
	Line  int    // 1-based; 0 when unknown
	Field string // path of the offending field; empty when none applies
	Msg   string
}

func (e *PolicyError) Error() string {
	switch {
	case e.Line > 0 && e.Field != "":
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	case e.Field != "":
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return e.Msg
}

// LabelError reports a job label that breaks the policy's label schema, or
// that is not a scalar.
type LabelError struct {
	Label string
	Msg   string
}

func (e *LabelError) Error() string {
	return fmt.Sprintf("label %q: %s", e.Label, e.Msg)
}

// ErrInvalidTopic is wrapped by the errors of ValidateTopic, and so by
// Evaluate when a job's topic is not a valid concrete topic.
var ErrInvalidTopic = errors.New("invalid topic")

// errNilJob is returned by Evaluate for a nil job.
var errNilJob = errors.New("decision: nil job")

// Warning flags a rule that a job can slip past, found by Parse and shown by
// `agate policy check`.
type Warning struct {
	Line   int
	RuleID string
	Label  string
	Msg    string
}

func (w Warning) String() string {
	return fmt.Sprintf("line %d: %s", w.Line, w.Msg)
}
