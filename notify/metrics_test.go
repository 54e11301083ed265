package notify

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agate-pdp/agate/store"
)

// The README's metrics table names exactly the deliverer's metrics.
func TestMetricsDocumented(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	d, err := New(Config{Store: struct{ store.Store }{}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	d.metrics.deliveries.WithLabelValues("ops", "delivered").Inc() // a vector without a child is not gathered
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(agate_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1) {
		if strings.HasPrefix(m[1], "agate_notifications_") {
			documented = append(documented, m[1])
		}
	}
	slices.Sort(names)
	slices.Sort(documented)
	if !slices.Equal(names, documented) {
		t.Errorf("README metrics table\n%v\nregistered\n%v", documented, names)
	}
}
