// Command pipeline drives Agate's approval pipeline under load: each client
// Decides a job that needs a human, Approves it as another principal and
// Publishes it as the dispatcher, over and over for a bounded time, then
// prints one JSON summary (jobs per second and latency percentiles, per job
// and per call).
//
//	pipeline -addr 127.0.0.1:7070 -clients 16 -duration 10s
package main
