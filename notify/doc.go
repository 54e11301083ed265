// Package notify delivers the transactional outbox of notifications (see
// store.NotificationTx) as webhooks: it reads the destinations file, claims due
// notifications under a lease, composes each one's message from its evidence event and
// job, signs it per the Standard Webhooks convention, sends it through a dialer that
// refuses private networks unless allowed, and settles it as delivered, to be retried
// with backoff, or dead-lettered. It also prunes finished notifications and reports the
// outbox's state as metrics.
package notify
