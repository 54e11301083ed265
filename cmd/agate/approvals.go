package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/agate-pdp/agate/canonical"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

const approvalsUsage = `usage:
  agate approvals list [--topic PATTERN] [flags]     the pending approvals the caller may decide
  agate approvals show JOB [flags]                   a job: payload, rule, reason, approvals, time left, job_hash
  agate approvals approve JOB [--reason TEXT] [--expect-hash H] [flags]
  agate approvals reject JOB --reason TEXT [--expect-hash H] [flags]
      approve and reject fetch the job, show it, check that its payload hashes to its
      job_hash, and send exactly that job_hash; --expect-hash refuses to act unless it is
      the hash shown earlier (by show)
flags:
  --server HOST:PORT   the server (env AGATE_SERVER)
  --token-file FILE    a file holding the bearer token (static or an OIDC access token);
                       else the token is read from the environment variable AGATE_TOKEN
  --ca FILE            CA bundle that signs the server's certificate (default: the system's)
  --plaintext          no TLS: only to a loopback address
  --json               machine-readable output
`

// approvalsEnv names the environment variables the approvals commands read. Credentials
// come from the environment or a file, never from a flag, so they stay out of process
// listings and shell history.
const (
	envServer = "AGATE_SERVER"
	envToken  = "AGATE_TOKEN"
)

func runApprovals(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[:1]) {
		if len(args) == 0 {
			fmt.Fprint(stderr, approvalsUsage)
			return exitError(2)
		}
		fmt.Fprint(stdout, approvalsUsage)
		return nil
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "list", "show", "approve", "reject":
	default:
		fmt.Fprintf(stderr, "unknown approvals command %q\n%s", cmd, approvalsUsage)
		return exitError(2)
	}
	o, jobID, err := parseApprovalsFlags(cmd, rest, stderr)
	if err != nil {
		return err
	}
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	switch cmd {
	case "list":
		return c.list(ctx, o, stdout)
	case "show":
		_, err := c.show(ctx, o, jobID, stdout)
		return err
	default:
		return c.decide(ctx, o, cmd, jobID, stdout, stderr)
	}
}

// approvalsOptions are the flags of the approvals commands.
type approvalsOptions struct {
	server, tokenFile, ca string
	plaintext, json       bool
	topic                 string // list
	reason, expectHash    string // approve, reject
}

func parseApprovalsFlags(cmd string, args []string, stderr io.Writer) (approvalsOptions, string, error) {
	var o approvalsOptions
	fs := flag.NewFlagSet("agate approvals "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), approvalsUsage) }
	fs.StringVar(&o.server, "server", os.Getenv(envServer), "server address (env "+envServer+")")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token (else env "+envToken+")")
	fs.StringVar(&o.ca, "ca", "", "CA bundle for the server's certificate")
	fs.BoolVar(&o.plaintext, "plaintext", false, "no TLS (loopback only)")
	fs.BoolVar(&o.json, "json", false, "JSON output")
	switch cmd {
	case "list":
		fs.StringVar(&o.topic, "topic", "", "a topic or NATS-style pattern (finance.>)")
	case "approve", "reject":
		fs.StringVar(&o.reason, "reason", "", "why; kept in the evidence (required for reject)")
		fs.StringVar(&o.expectHash, "expect-hash", "", "act only if the job's job_hash is this one")
	}
	// Flags may follow the job id: agate approvals approve pay-0001 --reason "…".
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return o, "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	want := 1
	if cmd == "list" {
		want = 0
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "agate approvals %s: want %d argument(s), got %d\n%s", cmd, want, len(pos), approvalsUsage)
		return o, "", exitError(2)
	}
	if cmd == "reject" && strings.TrimSpace(o.reason) == "" {
		return o, "", errors.New("--reason: a rejection needs a reason")
	}
	if o.server == "" {
		return o, "", fmt.Errorf("--server: no server address (or set %s)", envServer)
	}
	if len(pos) == 1 {
		return o, pos[0], nil
	}
	return o, "", nil
}

// approvalsClient is a connection to the server with the caller's token.
type approvalsClient struct {
	conn  *grpc.ClientConn
	dec   agatev1.DecisionServiceClient
	token string
}

func (c *approvalsClient) close() { _ = c.conn.Close() }

func (o approvalsOptions) connect() (*approvalsClient, error) {
	token, err := o.readToken()
	if err != nil {
		return nil, err
	}
	creds, err := o.transport()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(o.server, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	return &approvalsClient{conn: conn, dec: agatev1.NewDecisionServiceClient(conn), token: token}, nil
}

// readToken reads the bearer token from --token-file, else from AGATE_TOKEN. Errors
// never quote the token.
func (o approvalsOptions) readToken() (string, error) {
	var tok string
	if o.tokenFile != "" {
		raw, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(raw))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s: the file is empty", o.tokenFile)
		}
	} else {
		tok = strings.TrimSpace(os.Getenv(envToken))
		if tok == "" {
			return "", fmt.Errorf("no credentials: set %s or give --token-file", envToken)
		}
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", errors.New("the token holds white space or control characters")
	}
	return tok, nil
}

// transport is TLS (the system's roots, or --ca), or plaintext to a loopback address
// only: the bearer token must not cross a network in the clear.
func (o approvalsOptions) transport() (credentials.TransportCredentials, error) {
	if o.plaintext {
		if o.ca != "" {
			return nil, errors.New("--plaintext and --ca: give one")
		}
		if !loopbackAddr(o.server) {
			return nil, fmt.Errorf("--plaintext: %s is not a loopback address; the token would cross the network in the clear", o.server)
		}
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no certificates found", o.ca)
		}
		cfg.RootCAs = pool
	}
	return credentials.NewTLS(cfg), nil
}

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// list prints every page of the caller's approval queue.
func (c *approvalsClient) list(ctx context.Context, o approvalsOptions, stdout io.Writer) error {
	all := &agatev1.ListPendingApprovalsResponse{}
	req := &agatev1.ListPendingApprovalsRequest{Topic: o.topic, PageSize: 500}
	for {
		page, err := c.dec.ListPendingApprovals(ctx, req)
		if err != nil {
			return rpcError("ListPendingApprovals", err)
		}
		all.PendingApprovals = append(all.PendingApprovals, page.GetPendingApprovals()...)
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	if o.json {
		return writeProtoJSON(stdout, all)
	}
	if len(all.PendingApprovals) == 0 {
		fmt.Fprintln(stdout, "no pending approvals")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTOPIC\tACTOR\tRULE\tAPPROVALS\tTIME LEFT")
	for _, p := range all.PendingApprovals {
		v := p.GetJob()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", safe(v.GetJob().GetJobId()), safe(v.GetJob().GetTopic()),
			safe(v.GetJob().GetActor()), safe(v.GetRuleId()), len(v.GetApprovals()),
			v.GetRequiredApproval().GetQuorum(), time.Duration(p.GetTimeLeftSeconds())*time.Second)
	}
	return tw.Flush()
}

// shown is a job as fetched and displayed, with the hash its payload was checked against.
type shown struct {
	view     *agatev1.JobView
	timeLeft time.Duration
}

// show fetches a job, checks that its content hashes to its job_hash, and prints it.
// The content the person reads is then exactly what the hash, and so an approval,
// binds.
func (c *approvalsClient) show(ctx context.Context, o approvalsOptions, jobID string, stdout io.Writer) (shown, error) {
	res, err := c.dec.GetJob(ctx, &agatev1.GetJobRequest{JobId: jobID})
	if err != nil {
		return shown{}, rpcError("GetJob", err)
	}
	v := res.GetJob()
	j := v.GetJob()
	if j.GetJobId() != jobID {
		return shown{}, fmt.Errorf("the server answered with job %s for %s", safe(j.GetJobId()), safe(jobID))
	}
	labels := map[string]any{}
	for k, l := range j.GetLabels() {
		labels[k] = l.AsInterface()
	}
	h, err := canonical.JobHash(j.GetTopic(), j.GetActor(), labels, j.GetPayload())
	if err != nil || h != v.GetJobHash() {
		return shown{}, fmt.Errorf("job %s: its content does not hash to the job_hash the server sent (%s); not showing or acting on it",
			safe(jobID), safe(v.GetJobHash()))
	}
	s := shown{view: v}
	if v.GetStatus() == agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		s.timeLeft = max(time.Until(time.UnixMicro(v.GetExpiresAt())), 0).Truncate(time.Second)
	}
	if o.json {
		return s, writeJSON(stdout, map[string]any{"job": protoValue(v), "time_left_seconds": int64(s.timeLeft.Seconds()),
			"job_hash_verified": true})
	}
	printJob(stdout, s)
	return s, nil
}

// decide approves or rejects: it shows the job and sends the job_hash of that very
// fetch, so the approval binds what was shown.
func (c *approvalsClient) decide(ctx context.Context, o approvalsOptions, cmd, jobID string, stdout, stderr io.Writer) error {
	shownTo := stdout
	if o.json {
		shownTo = io.Discard // the answer is the only JSON document
	}
	s, err := c.show(ctx, approvalsOptions{}, jobID, shownTo)
	if err != nil {
		return err
	}
	hash := s.view.GetJobHash()
	if o.expectHash != "" && o.expectHash != hash {
		return fmt.Errorf("--expect-hash: the job's job_hash is now %s, not the %s you expected; nothing was sent", hash, safe(o.expectHash))
	}
	var answer proto.Message
	if cmd == "approve" {
		res, err := c.dec.Approve(ctx, &agatev1.ApproveRequest{JobId: jobID, JobHash: hash, Reason: o.reason})
		if err != nil {
			return rpcError("Approve", err)
		}
		answer = res
		if !o.json {
			switch {
			case res.GetAlreadyApproved():
				fmt.Fprintf(stdout, "\nalready approved by you; status %s\n", statusName(res.GetStatus()))
			default:
				fmt.Fprintf(stdout, "\napproved (%d of %d); status %s\n", len(res.GetApprovals()), res.GetQuorum(), statusName(res.GetStatus()))
			}
		}
	} else {
		res, err := c.dec.Reject(ctx, &agatev1.RejectRequest{JobId: jobID, JobHash: hash, Reason: o.reason})
		if err != nil {
			return rpcError("Reject", err)
		}
		answer = res
		if !o.json {
			if res.GetAlreadyRejected() {
				fmt.Fprintf(stdout, "\nalready rejected by %s\n", safe(res.GetRejectedBy()))
			} else {
				fmt.Fprintf(stdout, "\nrejected; status %s\n", statusName(res.GetStatus()))
			}
		}
	}
	if o.json {
		return writeProtoJSON(stdout, answer)
	}
	return nil
}

// printJob is the human-readable view of a job, every server-supplied string escaped
// so that none can move the cursor, recolour or reorder what the person reads.
func printJob(w io.Writer, s shown) {
	v := s.view
	j := v.GetJob()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, val string) { fmt.Fprintf(tw, "%s\t%s\n", k, val) }
	line("job", safe(j.GetJobId()))
	line("topic", safe(j.GetTopic()))
	line("actor", safe(j.GetActor()))
	line("status", statusName(v.GetStatus()))
	line("rule", safe(v.GetRuleId()))
	line("reason", safe(v.GetReason()))
	line("snapshot", safe(v.GetPolicySnapshot()))
	line("submitted by", safe(v.GetSubmittedBy()))
	var labels []string
	for k, l := range j.GetLabels() {
		b, _ := json.Marshal(l.AsInterface())
		labels = append(labels, safe(k)+"="+safe(string(b)))
	}
	slices.Sort(labels)
	line("labels", strings.Join(labels, " "))
	req := v.GetRequiredApproval()
	line("approvals", fmt.Sprintf("%d of %d (roles: %s)", len(v.GetApprovals()), req.GetQuorum(), safe(strings.Join(req.GetRoles(), ", "))))
	for _, a := range v.GetApprovals() {
		note := ""
		if a.GetReason() != "" {
			note = " — " + safe(a.GetReason())
		}
		line("", fmt.Sprintf("%s as %s at %s%s", safe(a.GetApprovedBy()), safe(a.GetApprovedRole()),
			time.UnixMicro(a.GetApprovedAt()).UTC().Format(time.RFC3339), note))
	}
	if v.GetExpiresAt() > 0 {
		left := "expired"
		if v.GetStatus() == agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL && s.timeLeft > 0 {
			left = s.timeLeft.String()
		}
		line("time left", fmt.Sprintf("%s (expires %s)", left, time.UnixMicro(v.GetExpiresAt()).UTC().Format(time.RFC3339)))
	}
	line("job_hash", safe(v.GetJobHash())+" (matches the payload below)")
	_ = tw.Flush()
	fmt.Fprintln(w, "payload:")
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, j.GetPayload(), "  ", "  "); err != nil {
		fmt.Fprintf(w, "  %s\n", safe(string(j.GetPayload()))) // not JSON: no layout to keep
		return
	}
	fmt.Fprintf(w, "  %s\n", safeBlock(pretty.String()))
}

// safe escapes every rune a terminal would not print as itself (control characters,
// escape sequences, bidirectional overrides, zero-width marks), line breaks included.
func safe(s string) string { return escape(s, false) }

// safeBlock is safe for the pretty-printed payload, whose line breaks are its layout:
// JSON strings cannot hold a raw line break, so none can come from the payload's data.
func safeBlock(s string) string { return escape(s, true) }

// escape writes s with every character a terminal would interpret, or that could start
// a line that looks like the CLI's own output, escaped: a reason or a label from the
// server never draws a fake status or payload block.
func escape(s string, lines bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' && lines:
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == unicode.ReplacementChar, !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func statusName(s agatev1.JobStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATUS_"))
}

// rpcError words a refusal for a person: the call, the code, the reason and the message.
func rpcError(call string, err error) error {
	st := status.Convert(err)
	r := ""
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			r = " " + info.GetReason()
		}
	}
	return fmt.Errorf("%s: %s%s: %s", call, st.Code(), r, safe(st.Message()))
}

// writeProtoJSON writes m in the API's JSON mapping, indented the same way every time
// (protojson varies its spacing on purpose).
func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(w)
	return err
}

// protoValue is m as a JSON value, for embedding in a larger document.
func protoValue(m proto.Message) json.RawMessage {
	b, err := protojson.Marshal(m)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
