// Package authzen serves the OpenID AuthZEN Authorization API 1.0 over HTTP: the PDP
// metadata document, the Access Evaluation endpoint and the Access Evaluations (batch)
// endpoint. It maps each AuthZEN request onto an Agate job (action.name → topic,
// subject.id → actor, flattened scalar properties → labels, the request itself → the
// payload), answers it with the job service's what-if Evaluate, which stores nothing,
// and maps the result back onto an AuthZEN decision. Callers are authenticated by the
// server's Authenticator and authorized as for gRPC's PolicyService.Evaluate; errors
// are RFC 9457 problem details carrying the gRPC ErrorInfo reasons.
//
// It also serves the draft AuthZEN Access Request and Approval Profile (arap.go): a
// require_human answer is a requestable denial bound by evaluation_id and the draft's
// binding_hash; an access request is the job's Decide, keyed by the caller and its
// Idempotency-Key; task status and cancellation are GetJob and Cancel; and an
// evaluation presenting the task's approval is the job's Publish, answered true only
// while the current policy still decides as it did. Task ids and evaluation ids are
// MACed with keys derived from the deployment's secret (secret.go), and every body is
// checked to mean one thing to every JSON reader before it is decoded (strict.go).
package authzen
