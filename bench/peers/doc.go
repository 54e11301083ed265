// Package peers compares Agate's policy engine with Open Policy Agent on the
// same policies and inputs. It is a module of its own so that Agate never
// depends on a peer: the main module is imported through a replace directive,
// and the load tools (ghz, hey) and OPA's server are pinned here as tools.
//
// Each Agate policy has a Rego equivalent that gives the same decision,
// deciding rule and matched rules for every job: the reference policy and
// the example policy are written by hand in testdata/, and the generated
// policies of N rules come from GenPolicy. TestEquivalence holds them to
// that; BenchmarkEngines times both engines on the inputs of Agate's own
// engine benchmarks (decision/bench_test.go).
package peers
