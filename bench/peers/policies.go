package peers

import (
	"fmt"
	"strings"
)

// GenPolicy returns a policy of n rules on distinct topics in Agate's YAML
// and in Rego. The YAML is exactly what Agate's engine benchmarks generate:
// every tenth rule's topic has a `*` wildcard (glob.match in Rego), and an
// `env` label is required and enumerated.
func GenPolicy(n int) (yaml, rego string) {
	var y, r strings.Builder
	y.WriteString("version: v1\nlabels:\n  env: {type: string, enum: [production, staging, dev], required: true}\nrules:\n")
	r.WriteString("package agate\n\n")
	r.WriteString(`env_ok if input.labels.env in {"production", "staging", "dev"}` + "\n\n")
	r.WriteString(`label_errors contains "env" if not env_ok` + "\n\n")
	decisions := []string{"deny", "require_human", "allow"}
	for i := range n {
		topic := fmt.Sprintf("team%d.service.execute", i)
		match := fmt.Sprintf("input.topic == %q", topic)
		if i%10 == 0 {
			topic = fmt.Sprintf("team%d.*.execute", i)
			match = fmt.Sprintf("glob.match(%q, [\".\"], input.topic)", topic)
		}
		d := decisions[i%3]
		fmt.Fprintf(&y, "  - id: rule-%d\n    when: {topic: %s, env: production}\n    decision: %s\n", i, topic, d)
		fmt.Fprintf(&r, "matched contains [%d, \"rule-%d\", %q] if {\n\t%s\n\tinput.labels.env == \"production\"\n}\n\n", i, i, d, match)
	}
	return y.String(), r.String()
}
