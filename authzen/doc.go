// Package authzen serves the OpenID AuthZEN Authorization API 1.0 over HTTP: the PDP
// metadata document, the Access Evaluation endpoint and the Access Evaluations (batch)
// endpoint. It maps each AuthZEN request onto an Agate job (action.name → topic,
// subject.id → actor, flattened scalar properties → labels, the request itself → the
// payload), answers it with the job service's what-if Evaluate, which stores nothing,
// and maps the result back onto an AuthZEN decision. Callers are authenticated by the
// server's Authenticator and authorized as for gRPC's PolicyService.Evaluate; errors
// are RFC 9457 problem details carrying the gRPC ErrorInfo reasons.
package authzen
