package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// decodeLabels reads a stored job's labels (a canonical JSON object of scalars) back
// into the form the engine evaluates. It walks tokens rather than decoding by
// reflection.
func decodeLabels(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("jobs: stored labels are not a JSON object")
	}
	m := map[string]any{}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("jobs: stored labels: %w", err)
		}
		v, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("jobs: stored labels: %w", err)
		}
		switch v.(type) {
		case string, bool, float64:
		default:
			return nil, fmt.Errorf("jobs: stored label %v is not a scalar", k)
		}
		m[k.(string)] = v
	}
	return m, nil
}
