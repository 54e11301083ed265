package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// Message is the body of a standard webhook, per the Standard Webhooks convention's
// recommended shape.
type Message struct {
	Type      string `json:"type"`      // "job." + the notification kind
	Timestamp string `json:"timestamp"` // when the transition happened (RFC 3339)
	Data      Data   `json:"data"`
}

// Data is what an approver, a submitter or a dispatcher needs to act on a transition.
// It names people and services by their ids and carries no credential of any kind.
type Data struct {
	NotificationID string   `json:"notification_id"` // the webhook-id
	Kind           string   `json:"kind"`
	JobID          string   `json:"job_id"`
	Topic          string   `json:"topic"`
	Actor          string   `json:"actor"`
	SubmittedBy    string   `json:"submitted_by"`
	Status         string   `json:"status"` // the job's status after the transition
	Decision       string   `json:"decision"`
	RuleID         string   `json:"rule_id"`
	Reason         string   `json:"reason"` // the rule's
	JobHash        string   `json:"job_hash"`
	PolicySnapshot string   `json:"policy_snapshot"`
	Revision       int      `json:"revision"`
	ApprovalRoles  []string `json:"approval_roles,omitempty"`
	Quorum         int      `json:"quorum,omitempty"`
	ExpiresAt      string   `json:"expires_at,omitempty"` // the approval deadline (RFC 3339)
	Principal      string   `json:"principal"`            // who made the transition
	Note           string   `json:"note,omitempty"`       // the approver's, rejecter's or canceller's reason, or why a conflict arose
	Conflict       string   `json:"conflict,omitempty"`
	Attempt        int64    `json:"attempt,omitempty"`
	EventID        string   `json:"event_id"` // the transition's evidence event
	TraceID        string   `json:"trace_id"`
	// Payload is the job's payload, sent only to trusted destinations.
	Payload json.RawMessage `json:"payload,omitempty"`
}

func rfc3339(us int64) string {
	if us <= 0 {
		return ""
	}
	return time.UnixMicro(us).UTC().Format(time.RFC3339Nano)
}

// data is n's content, read from its evidence event e and its job j.
func data(n *store.Notification, e *evidence.Event, j *store.Job, trusted bool) Data {
	d := Data{NotificationID: n.ID, Kind: n.Kind, JobID: j.ID, Topic: j.Topic, Actor: j.Actor,
		SubmittedBy: j.SubmittedBy, Status: e.Status, Decision: e.Decision, RuleID: e.RuleID,
		Reason: j.Reason, JobHash: e.JobHash, PolicySnapshot: e.PolicySnapshot, Revision: j.Revision,
		Principal: e.Principal, Conflict: e.Conflict, Attempt: e.Attempt, EventID: e.EventID, TraceID: e.TraceID}
	if e.Kind == evidence.KindDecision {
		d.Reason = e.Reason
	} else {
		d.Note = e.Reason
	}
	if j.ApprovalRequired {
		d.ApprovalRoles, d.Quorum, d.ExpiresAt = j.ApprovalRoles, j.Quorum, rfc3339(j.ExpiresAt)
	}
	if trusted && len(j.Payload) > 0 {
		d.Payload = json.RawMessage(j.Payload)
	}
	return d
}

// body writes n's message for a destination of format f.
func body(f Format, n *store.Notification, e *evidence.Event, j *store.Job, trusted bool) ([]byte, error) {
	d := data(n, e, j, trusted)
	if f == FormatSlack {
		return json.Marshal(struct {
			Text string `json:"text"`
		}{slackText(&d)})
	}
	return json.Marshal(Message{Type: "job." + n.Kind, Timestamp: rfc3339(e.At), Data: d})
}

var titles = map[string]string{
	jobs.NotifyPendingApproval: "Approval needed",
	jobs.NotifyApproved:        "Approved",
	jobs.NotifyRejected:        "Rejected",
	jobs.NotifyExpired:         "Expired before approval",
	jobs.NotifyCancelled:       "Cancelled",
	jobs.NotifyConflict:        "In conflict: decide again",
	jobs.NotifyPublished:       "Published",
}

// slackText is a Slack message (mrkdwn) with the same facts as the standard body.
func slackText(d *Data) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s*: job `%s` (`%s`) for `%s`, submitted by `%s`\n", titles[d.Kind], esc(d.JobID), esc(d.Topic), esc(d.Actor), esc(d.SubmittedBy))
	fmt.Fprintf(&b, "Rule `%s`: %s\n", esc(d.RuleID), esc(d.Reason))
	fmt.Fprintf(&b, "Status `%s`", d.Status)
	if d.Principal != "" && d.Kind != jobs.NotifyPendingApproval {
		fmt.Fprintf(&b, " by `%s`", esc(d.Principal))
	}
	if d.Note != "" {
		fmt.Fprintf(&b, ": %s", esc(d.Note))
	}
	b.WriteString("\n")
	if d.Kind == jobs.NotifyPendingApproval {
		fmt.Fprintf(&b, "Approvers: %s (quorum %d), before %s\n", esc(strings.Join(d.ApprovalRoles, ", ")), d.Quorum, d.ExpiresAt)
	}
	fmt.Fprintf(&b, "job_hash `%s`", d.JobHash)
	if len(d.Payload) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, d.Payload, "", "  ") == nil {
			fmt.Fprintf(&b, "\n```%s```", strings.ReplaceAll(esc(pretty.String()), "```", "'''"))
		}
	}
	return b.String()
}

// esc escapes the three characters Slack's mrkdwn gives meaning to, so text from a job
// cannot forge a link or a mention.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
