package authzen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	"github.com/agate-pdp/agate/decision"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
)

// The endpoints, at the specification's default paths.
const (
	MetadataPath    = "/.well-known/authzen-configuration"
	EvaluationPath  = "/access/v1/evaluation"
	EvaluationsPath = "/access/v1/evaluations"
)

// evaluateMethod is the gRPC method whose roles the evaluation endpoints take.
const evaluateMethod = agatev1.PolicyService_Evaluate_FullMethodName

// Config is what the handler is built from.
type Config struct {
	Auth *server.Authenticator // required
	Log  *slog.Logger

	// BaseURL is the public base URL named in the metadata (policy_decision_point);
	// empty means the scheme and Host of each metadata request.
	BaseURL        string
	MaxBodyBytes   int64         // largest request body; default 4 MiB, gRPC's request limit
	MaxCallTime    time.Duration // longest a request may run; default 30 s
	MaxEvaluations int           // most items in one Access Evaluations request; default 1000
	// DenialTTL is how long a requestable denial may be submitted as an access
	// request (context.access_request.expires_at); default DefaultDenialTTL.
	DenialTTL time.Duration
	Clock     func() time.Time // default time.Now
}

// Handler serves the AuthZEN endpoints. Until Attach gives it the job service, the
// evaluation endpoints answer 503.
type Handler struct {
	cfg     Config
	base    *url.URL
	backend atomic.Pointer[backend]
}

// backend is what Attach installs, at once: nothing is served without both.
type backend struct {
	svc  *jobs.Service
	keys *macKeys
}

// New returns a handler; it checks BaseURL.
func New(cfg Config) (*Handler, error) {
	if cfg.Auth == nil {
		return nil, errors.New("authzen: Auth is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.MaxCallTime <= 0 {
		cfg.MaxCallTime = 30 * time.Second
	}
	if cfg.MaxEvaluations <= 0 {
		cfg.MaxEvaluations = 1000
	}
	if cfg.DenialTTL <= 0 {
		cfg.DenialTTL = DefaultDenialTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	h := &Handler{cfg: cfg}
	if cfg.BaseURL != "" {
		u, err := ParseBaseURL(cfg.BaseURL)
		if err != nil {
			return nil, err
		}
		h.base = u
	}
	return h, nil
}

// ParseBaseURL checks a public base URL: absolute, https (http only on a loopback
// host, for development), without query or fragment. The specification's PDP
// identifier is an https URL, and a PEP compares it with the URL it fetched.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("authzen base URL: %w", err)
	}
	switch {
	case u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return nil, fmt.Errorf("authzen base URL %q: want an absolute https:// URL", s)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		return nil, fmt.Errorf("authzen base URL %q: want https (http only on a loopback host)", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("authzen base URL %q: no query, fragment or user info", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Attach installs the job service once the database is reachable, with the
// deployment's secret for the profile's task ids and evaluation ids. Until then every
// endpoint but the metadata answers 503.
func (h *Handler) Attach(svc *jobs.Service, secret Secret) error {
	if svc == nil {
		return errors.New("authzen: Attach needs a job service")
	}
	keys, err := deriveKeys(secret)
	if err != nil {
		return err
	}
	if !h.backend.CompareAndSwap(nil, &backend{svc: svc, keys: keys}) {
		return errors.New("authzen: job service already attached")
	}
	return nil
}

type requestIDKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// ServeHTTP echoes or assigns the request id, then routes. Every answer, errors
// included, carries X-Request-ID.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-ID")
	if !validRequestID(id) {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header().Set("X-Request-ID", id)
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), requestIDKey{}, id), h.cfg.MaxCallTime)
	defer cancel()
	r = r.WithContext(ctx)
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			h.cfg.Log.ErrorContext(ctx, "panic in authzen handler", "panic", fmt.Sprint(p))
			if rec.status == 0 {
				writeProblem(rec, r, server.Failure{Code: codes.Internal, Message: "internal error"}, 0)
			}
		}
		h.observe(r, rec, start)
	}()
	switch r.URL.Path {
	case MetadataPath:
		h.only(rec, r, http.MethodGet, h.metadata)
	case EvaluationPath:
		h.only(rec, r, http.MethodPost, h.evaluation)
	case EvaluationsPath:
		h.only(rec, r, http.MethodPost, h.evaluations)
	case RequestsPath:
		h.only(rec, r, http.MethodPost, h.submit)
	default:
		if rest, ok := strings.CutPrefix(r.URL.Path, RequestsPath+"/"); ok {
			h.tasks(rec, r, rest)
			return
		}
		writeProblem(rec, r, server.Failure{Code: codes.NotFound, Reason: jobs.ReasonNotFound,
			Message: "no such endpoint; see " + MetadataPath}, 0)
	}
}

// maxRequestID bounds a caller's X-Request-ID: it is a correlation token, echoed in
// every answer and logged, not a place for a caller's text.
const maxRequestID = 128

// validRequestID reports whether id may be kept: 1 to maxRequestID printable ASCII
// characters. Any other id is replaced by a fresh one.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func (h *Handler) only(w http.ResponseWriter, r *http.Request, method string, serve func(http.ResponseWriter, *http.Request)) {
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		writeProblem(w, r, server.Failure{Code: codes.InvalidArgument,
			Message: "method " + r.Method + " not allowed; use " + method}, http.StatusMethodNotAllowed)
		return
	}
	serve(w, r)
}

// recorder remembers the status and principal for the request's log line.
type recorder struct {
	http.ResponseWriter
	status    int
	principal string
}

func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
	r.ResponseWriter.WriteHeader(s)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// observe logs each request as one JSON line: successes at debug, refusals at info,
// server failures at error. Bodies and credentials are never logged.
func (h *Handler) observe(r *http.Request, rec *recorder, start time.Time) {
	level := slog.LevelDebug
	switch {
	case rec.status >= 500:
		level = slog.LevelError
	case rec.status >= 400:
		level = slog.LevelInfo
	}
	h.cfg.Log.Log(r.Context(), level, "authzen", "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"duration_ms", float64(time.Since(start).Microseconds())/1000, "principal", rec.principal,
		"request_id", requestID(r.Context()))
}

// metadata serves the PDP metadata document. It needs no credentials: it names
// endpoints, nothing about policy, and a PEP reads it before it has a token to use.
func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	b := h.baseURL(r)
	writeJSON(w, map[string]any{
		"policy_decision_point":       b,
		"access_evaluation_endpoint":  b + EvaluationPath,
		"access_evaluations_endpoint": b + EvaluationsPath,
		"access_request_endpoint":     b + RequestsPath,
		"capabilities":                []string{capabilityAccessRequest},
	})
}

// baseURL is the configured public base URL, else the scheme and Host r used.
func (h *Handler) baseURL(r *http.Request) string {
	base := h.base
	if base == nil {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = &url.URL{Scheme: scheme, Host: r.Host}
	}
	return base.String()
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// caller is an admitted evaluation caller. evalErr is its refusal for a plain
// evaluation when it lacks Evaluate's roles: it may then only re-evaluate with an
// approval, which is a Publish and takes Publish's standing (a dispatcher's).
type caller struct {
	p       jobs.Principal
	evalErr error
}

// admit runs what every evaluation request goes through before its body is read:
// the backend, authentication, then the roles of gRPC's Evaluate, or of Publish for a
// dispatcher's re-evaluations. It answers the request itself when it refuses it.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (*jobs.Service, caller, bool) {
	b := h.backend.Load()
	if b == nil {
		writeProblem(w, r, server.Failure{Code: codes.Unavailable, Message: "starting: waiting for the database"}, 0)
		return nil, caller{}, false
	}
	svc := b.svc
	p, err := h.cfg.Auth.AuthenticateHTTP(r)
	var c caller
	if err == nil {
		if rec, ok := w.(*recorder); ok {
			rec.principal = p.ID
		}
		c = caller{p: p, evalErr: server.Authorize(evaluateMethod, p)}
		if c.evalErr != nil && !p.HasRole(jobs.RoleDispatch) {
			err = c.evalErr
		}
	}
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return nil, caller{}, false
	}
	return svc, c, true
}

// readBody reads a JSON request body within the size limit into v, and answers the
// request itself when it cannot. The body must also be unambiguous for shape s (see
// strictJSON).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, v any, s shape) bool {
	fail := func(status int, field, msg string) bool {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, invalid(field, msg)), status)
		return false
	}
	// The AuthZEN certification scenario (c-2-4-3) wants 400, not 415, for another
	// content type.
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return fail(http.StatusBadRequest, "Content-Type", "must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fail(http.StatusBadRequest, "Content-Type", "charset must be utf-8")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fail(http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("larger than %d bytes", h.cfg.MaxBodyBytes))
	case err != nil:
		return fail(http.StatusBadRequest, "body", "could not be read")
	case len(bytes.TrimSpace(body)) == 0:
		return fail(http.StatusBadRequest, "body", "required: a JSON object")
	case !utf8.Valid(body):
		return fail(http.StatusBadRequest, "body", "not valid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return fail(http.StatusBadRequest, jsonField(err), jsonProblem(err))
	}
	if _, err := d.Token(); err != io.EOF {
		return fail(http.StatusBadRequest, "body", "more than one JSON value")
	}
	if err := strictJSON(body, s); err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), http.StatusBadRequest)
		return false
	}
	return true
}

// jsonField names the member a decoding error is about, or "body".
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return "body"
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.As(err, &te) && te.Field == "":
		return "must be a JSON object"
	case errors.As(err, &te):
		return fmt.Sprintf("must be a JSON %s, not %s", jsonType(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end"
	}
	return "malformed JSON: " + err.Error()
}

func jsonType(kind string) string {
	switch kind {
	case "struct", "map", "ptr":
		return "object"
	case "slice":
		return "array"
	case "bool":
		return "boolean"
	case "string":
		return "string"
	}
	return kind
}

// evaluation serves POST /access/v1/evaluation.
func (h *Handler) evaluation(w http.ResponseWriter, r *http.Request) {
	svc, c, ok := h.admit(w, r)
	if !ok {
		return
	}
	var ev evaluation
	if !h.readBody(w, r, &ev, shapeEvaluation) {
		return
	}
	ev.normalize()
	res, err := h.evaluate(r, svc, c, ev, "")
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	writeJSON(w, res)
}

// evaluate answers one evaluation. A plain one stores nothing; a require_human answer
// is a requestable denial. One that presents an approval (context.approval) is a
// re-evaluation: the job's Publish.
func (h *Handler) evaluate(r *http.Request, svc *jobs.Service, c caller, ev evaluation, at string) (response, error) {
	ctx := r.Context()
	if err := ev.responseMembers(at); err != nil {
		return response{}, err
	}
	appr, err := ev.stripMachinery(at)
	if err != nil {
		return response{}, err
	}
	if appr != nil {
		return h.reevaluate(ctx, svc, c.p, ev, appr, at)
	}
	if c.evalErr != nil {
		return response{}, c.evalErr
	}
	req, src, err := ev.job(at)
	if err != nil {
		return response{}, err
	}
	res, err := svc.Evaluate(ctx, req, "")
	if err != nil {
		return response{}, requestField(err, at, src)
	}
	out := answer(res)
	if res.Result.Decision == decision.RequireHuman {
		if err := h.requestable(r, &ev, &out); err != nil {
			return response{}, err
		}
	}
	return out, nil
}

// evaluations serves POST /access/v1/evaluations. Without items it is the single
// evaluation; with them, each item takes the top-level values as defaults and is
// evaluated in order. A failed item answers decision false with the error in its
// context, as the specification's errors section asks; a failure of the whole
// request is a problem.
func (h *Handler) evaluations(w http.ResponseWriter, r *http.Request) {
	svc, c, ok := h.admit(w, r)
	if !ok {
		return
	}
	var b batch
	if !h.readBody(w, r, &b, shapeBatch) {
		return
	}
	sem := executeAll
	if b.Options.Semantic != nil {
		sem = *b.Options.Semantic
	}
	fail := func(err error) { writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0) }
	switch sem {
	case executeAll, denyOnFirstDeny, permitOnFirstPermit:
	default:
		fail(invalid("options.evaluations_semantic", "must be execute_all, deny_on_first_deny or permit_on_first_permit"))
		return
	}
	b.normalize()
	if len(b.Evaluations) == 0 {
		res, err := h.evaluate(r, svc, c, b.evaluation, "")
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, res)
		return
	}
	if len(b.Evaluations) > h.cfg.MaxEvaluations {
		fail(invalid("evaluations", fmt.Sprintf("at most %d items", h.cfg.MaxEvaluations)))
		return
	}
	if err := h.boundBatch(&b); err != nil {
		je, _ := jobs.AsError(err)
		status := 0
		if je != nil && je.Code == jobs.CodeResourceExhausted {
			status = http.StatusRequestEntityTooLarge
		}
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), status)
		return
	}
	out := make([]response, 0, len(b.Evaluations))
	for i, item := range b.Evaluations {
		if err := r.Context().Err(); err != nil {
			fail(err)
			return
		}
		item.normalize()
		res, err := h.evaluate(r, svc, c, withDefaults(b.evaluation, item), fmt.Sprintf("evaluations[%d].", i))
		if err != nil {
			je, ok := jobs.AsError(err)
			if !ok { // not the item's fault: the whole request fails, closed
				fail(err)
				return
			}
			f := server.Classify(r.Context(), h.cfg.Log, je)
			res = response{Context: &decisionContext{Error: &itemErr{Status: statusOf(f.Code), Reason: f.Reason,
				Field: f.Field, Message: f.Message}}}
		}
		out = append(out, res)
		if (sem == denyOnFirstDeny && !res.Decision) || (sem == permitOnFirstPermit && res.Decision) {
			break
		}
	}
	writeJSON(w, struct {
		Evaluations []response `json:"evaluations"`
	}{out})
}

// boundBatch bounds the work of a batch before any of it is done. Each item takes the
// top-level values it omits, so a small body can stand for many times its size: the
// items as evaluated, defaults merged, must together fit in MaxBodyBytes, as gRPC's
// request limit bounds a batch there. And an item may not present an approval: a
// re-evaluation is an enforcement, recorded as the job's Publish, one per request at
// /access/v1/evaluation.
func (h *Handler) boundBatch(b *batch) error {
	if hasApproval(b.Context) {
		return invalid("context.approval", "a re-evaluation presenting an approval is one request to "+EvaluationPath+", not a batch default")
	}
	size := func(v any) int64 {
		raw, _ := json.Marshal(v)
		return int64(len(raw))
	}
	def := [4]int64{size(b.Subject), size(b.Resource), size(b.Action), int64(len(b.Context))}
	var total int64
	for i := range b.Evaluations {
		item := &b.Evaluations[i]
		if hasApproval(item.Context) {
			return invalid(fmt.Sprintf("evaluations[%d].context.approval", i),
				"a re-evaluation presenting an approval is one request to "+EvaluationPath+", not a batch item")
		}
		// An entity the item names replaces the default's; one it omits is the default.
		for k, own := range []int64{sizeIf(item.Subject != nil, item.Subject), sizeIf(item.Resource != nil, item.Resource),
			sizeIf(item.Action != nil, item.Action), int64(len(item.Context))} {
			if own == 0 {
				own = def[k]
			}
			total += own
		}
		if total > h.cfg.MaxBodyBytes {
			return &jobs.Error{Code: jobs.CodeResourceExhausted, Reason: jobs.ReasonInvalidField, Field: "evaluations",
				Msg:  fmt.Sprintf("evaluations: the items with their defaults come to more than %d bytes; send the defaults in each item's stead, or fewer items per request", h.cfg.MaxBodyBytes),
				Meta: map[string]string{"field": "evaluations"}}
		}
	}
	return nil
}

func sizeIf[T any](ok bool, v *T) int64 {
	if !ok {
		return 0
	}
	raw, _ := json.Marshal(v)
	return int64(len(raw))
}

// hasApproval reports whether a context object holds the profile's approval member.
func hasApproval(ctx json.RawMessage) bool {
	if isNull(ctx) {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(ctx, &m) != nil {
		return false
	}
	_, ok := m["approval"]
	return ok
}
