package main

import (
	"encoding/json"
	"fmt"
)

func jsonUnmarshal(path string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
