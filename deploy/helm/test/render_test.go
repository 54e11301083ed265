// Package test renders the agate Helm chart with the Helm SDK and checks every manifest
// it produces, decoded strictly into the Kubernetes API types. It is its own module so
// that the Helm SDK stays out of Agate's dependencies.
package test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var chartDir = filepath.Join("..", "agate")

var loadChart = sync.OnceValues(func() (*chart.Chart, error) { return loader.Load(chartDir) })

// manifest is one rendered object: where it came from, its text and its decoded form.
type manifest struct {
	source string
	text   string
	obj    any
}

// rendered is a release's objects, decoded.
type rendered struct {
	all []manifest
}

// one returns the only object of type T, failing the test unless there is exactly one.
func one[T any](t *testing.T, r rendered) *T {
	t.Helper()
	var found []*T
	for _, m := range r.all {
		if o, ok := m.obj.(*T); ok {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T rendered, want 1", len(found), zero)
	}
	return found[0]
}

func count[T any](r rendered) int {
	n := 0
	for _, m := range r.all {
		if _, ok := m.obj.(*T); ok {
			n++
		}
	}
	return n
}

// render renders the chart with valuesYAML over the chart's defaults, as `helm install`
// would (schema validation included), and decodes every manifest strictly.
func render(t *testing.T, valuesYAML string) (rendered, error) {
	t.Helper()
	ch, err := loadChart()
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := chartutil.ReadValues([]byte(valuesYAML))
	if err != nil {
		t.Fatalf("test values: %v", err)
	}
	opts := chartutil.ReleaseOptions{Name: "agate", Namespace: "pdp", Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return rendered{}, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, top)
	if err != nil {
		return rendered{}, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var r rendered
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			continue
		}
		for _, doc := range releaseutil.SplitManifests(files[n]) {
			if isBlank(doc) {
				continue
			}
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, doc)
			}
			r.all = append(r.all, manifest{source: n, text: doc, obj: obj})
		}
	}
	return r, nil
}

func isBlank(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// decodeStrict decodes a manifest into its Kubernetes API type; a field the type does
// not have, a duplicate field or a kind the chart should not render is an error.
func decodeStrict(doc string) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + "/" + tm.Kind {
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1/Secret":
		obj = &corev1.Secret{}
	case "v1/PersistentVolumeClaim":
		obj = &corev1.PersistentVolumeClaim{}
	case "policy/v1/PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		obj = &monitoringv1.ServiceMonitor{}
	default:
		return nil, fmt.Errorf("unexpected kind %s/%s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		return nil, fmt.Errorf("strict decoding %s: %w", tm.Kind, err)
	}
	return obj, nil
}

// base is the least a working install sets: the three Secrets and a transport choice.
const base = `
database: {existingSecret: agate-db}
tokens: {existingSecret: agate-tokens}
evidenceKey: {existingSecret: agate-evidence-key}
`

func mustRender(t *testing.T, valuesYAML string) rendered {
	t.Helper()
	r, err := render(t, valuesYAML)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// secretShaped finds text that looks like secret material: PEM blocks, credentials in a
// URL, and the sentinel values the tests use for secrets.
var secretShaped = regexp.MustCompile(`-----BEGIN|://[^/\s"@]+:[^/\s"@]+@|hunter2|s3cr3t`)
