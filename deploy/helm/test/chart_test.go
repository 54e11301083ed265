package test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// valueSets are installs the chart must render into a working, locked-down release.
var valueSets = []struct {
	name   string
	values string
	tls    bool
	mtls   bool
	policy string // the ConfigMap the policy comes from, "" for none
	sqlite bool
	sm     bool
	pvc    bool
	notify bool
}{
	{name: "plaintext", values: base + "plaintext: true\n"},
	{name: "tls", values: base + "tls: {existingSecret: agate-tls}\n", tls: true},
	{name: "mtls, inline policy, ServiceMonitor", values: base + `
tls: {existingSecret: agate-tls, clientCA: {existingSecret: agate-client-ca}}
policy:
  inline: |
    version: v1
    rules:
      - id: deny-all
        decision: deny
metrics: {serviceMonitor: {enabled: true, labels: {release: prom}}}
flags: {log-level: debug, seal-interval: 5s, decide-batch-max: 128, pprof: false, require-client-cert: true}
extraEnv:
  - {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: "http://otel-collector:4317"}
replicaCount: 3
podDisruptionBudget: {minAvailable: 2, maxUnavailable: null}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: pdp, effect: NoSchedule}]
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app.kubernetes.io/name: agate}}
`, tls: true, mtls: true, policy: "agate-policy", sm: true},
	{name: "existing policy ConfigMap, notifications", values: base + "plaintext: true\npolicy: {existingConfigMap: my-policy, key: prod.yaml}\nnotifications: {existingSecret: agate-webhooks}\n",
		policy: "my-policy", notify: true},
	{name: "sqlite on a volume", values: `
database: {sqlite: true}
tokens: {existingSecret: agate-tokens}
evidenceKey: {existingSecret: agate-evidence-key}
plaintext: true
replicaCount: 1
persistence: {enabled: true, size: 5Gi}
`, sqlite: true, pvc: true},
}

func TestValueSets(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			r := mustRender(t, vs.values)
			d := one[appsv1.Deployment](t, r)
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
				t.Errorf("%d containers and %d init containers, want one agate container", len(pod.Containers), len(pod.InitContainers))
			}
			checkProbes(t, c)
			checkSecurity(t, pod)
			checkSecretsReferenced(t, pod, vs.sqlite)
			checkArgsMatchMounts(t, pod)

			args := strings.Join(c.Args, " ")
			if c.Args[0] != "serve" {
				t.Errorf("args %q: want agate serve", args)
			}
			if got := strings.Contains(args, "--tls-cert=") && strings.Contains(args, "--tls-key="); got != vs.tls {
				t.Errorf("TLS flags present = %v, want %v: %s", got, vs.tls, args)
			}
			if got := slices.Contains(c.Args, "--insecure-plaintext-tokens"); got == vs.tls {
				t.Errorf("--insecure-plaintext-tokens present = %v with TLS = %v; want it exactly when plaintext", got, vs.tls)
			}
			if got := strings.Contains(args, "--tls-client-ca="); got != vs.mtls {
				t.Errorf("--tls-client-ca present = %v, want %v", got, vs.mtls)
			}
			if got := volumeFrom(pod, "policy"); vs.policy != "" {
				if got == nil || got.ConfigMap == nil || got.ConfigMap.Name != vs.policy || !strings.Contains(args, "--policy=") {
					t.Errorf("policy: want ConfigMap %s mounted and --policy set; volume %+v, args %s", vs.policy, got, args)
				}
			} else if got != nil || strings.Contains(args, "--policy") {
				t.Errorf("policy mounted or --policy set without a policy: %s", args)
			}
			if got := volumeFrom(pod, "notifications"); vs.notify {
				if got == nil || got.Secret == nil || got.Secret.SecretName != "agate-webhooks" || !strings.Contains(args, "--notifications=/etc/agate/notifications/notifications.yaml") {
					t.Errorf("notifications: want Secret agate-webhooks mounted and --notifications set; volume %+v, args %s", got, args)
				}
			} else if got != nil || strings.Contains(args, "--notifications") {
				t.Errorf("notifications mounted or --notifications set without a Secret: %s", args)
			}
			if got := count[corev1.ConfigMap](r) == 1; got != (vs.policy == "agate-policy") {
				t.Errorf("chart's policy ConfigMap rendered = %v, want %v", got, vs.policy == "agate-policy")
			}
			if got := count[monitoringv1.ServiceMonitor](r) == 1; got != vs.sm {
				t.Errorf("ServiceMonitor rendered = %v, want %v", got, vs.sm)
			}
			if got := count[corev1.PersistentVolumeClaim](r) == 1; got != vs.pvc {
				t.Errorf("PVC rendered = %v, want %v", got, vs.pvc)
			}
			if vs.sqlite && d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("SQLite deployment strategy %q, want Recreate (one writer)", d.Spec.Strategy.Type)
			}

			// Service, PDB and ServiceMonitor select exactly the Deployment's pods.
			podLabels := labels.Set(d.Spec.Template.Labels)
			sel, err := metav1LabelSelector(d.Spec.Selector)
			if err != nil || !sel.Matches(podLabels) {
				t.Errorf("Deployment selector %v does not match its pods %v", d.Spec.Selector, podLabels)
			}
			svc := one[corev1.Service](t, r)
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				t.Errorf("Service selector %v does not match the pods", svc.Spec.Selector)
			}
			ports := map[string]int32{}
			for _, p := range svc.Spec.Ports {
				ports[p.Name] = p.Port
			}
			if ports["grpc"] != 7070 || ports["http"] != 7071 {
				t.Errorf("Service ports %v, want grpc 7070, http 7071", ports)
			}
			pdb := one[policyv1.PodDisruptionBudget](t, r)
			if s, err := metav1LabelSelector(pdb.Spec.Selector); err != nil || !s.Matches(podLabels) {
				t.Errorf("PDB selector %v does not match the pods", pdb.Spec.Selector)
			}
			if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
				t.Errorf("PDB: want exactly one of minAvailable and maxUnavailable: %+v", pdb.Spec)
			}
			if vs.sm {
				sm := one[monitoringv1.ServiceMonitor](t, r)
				if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
					t.Errorf("ServiceMonitor endpoints %+v, want port http path /metrics", sm.Spec.Endpoints)
				}
				if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
					t.Errorf("ServiceMonitor selector %v does not match the Service's labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
				}
			}
			checkNoSecretInManifests(t, r)
		})
	}
}

func checkProbes(t *testing.T, c corev1.Container) {
	t.Helper()
	httpPort := int32(0)
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = p.ContainerPort
		}
	}
	if httpPort != 7071 {
		t.Errorf("container port http = %d, want 7071", httpPort)
	}
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET, got %+v", tc.name, tc.probe)
			continue
		}
		g := tc.probe.HTTPGet
		if g.Path != tc.path || g.Port.String() != "http" || (g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP) {
			t.Errorf("%s probe: GET %s on port %s, want %s on port http (%d)", tc.name, g.Path, g.Port.String(), tc.path, httpPort)
		}
	}
}

func checkSecurity(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	} else if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccomp %+v, want RuntimeDefault", psc.SeccompProfile)
	}
	if psc != nil && (psc.FSGroup == nil || *psc.FSGroup == 0) {
		t.Errorf("pod fsGroup unset or 0: the mounted Secrets and the data volume must be the runtime group's")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; agate never calls the Kubernetes API")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("pod shares a host namespace")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatalf("container %s: no securityContext", c.Name)
		}
		switch {
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: root filesystem is writable", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: privilege escalation allowed", c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("container %s: privileged", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("container %s: capabilities %+v, want drop [ALL] and nothing added", c.Name, sc.Capabilities)
		case sc.RunAsUser != nil && *sc.RunAsUser == 0:
			t.Errorf("container %s: runs as root", c.Name)
		}
		for _, dir := range []string{"/var/lib/agate", "/tmp"} {
			if !mountedAt(c, dir) {
				t.Errorf("container %s: no writable volume at %s", c.Name, dir)
			}
		}
	}
}

// checkSecretsReferenced: the database URL arrives from a Secret through the
// environment, the tokens and the evidence key as Secret volumes.
func checkSecretsReferenced(t *testing.T, pod corev1.PodSpec, sqlite bool) {
	t.Helper()
	c := pod.Containers[0]
	var db *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "AGATE_DB" {
			db = &c.Env[i]
		}
	}
	switch {
	case db == nil:
		t.Error("AGATE_DB not set")
	case sqlite:
		if db.Value != "/var/lib/agate/agate.db" {
			t.Errorf("SQLite AGATE_DB = %q, want the file on the data volume", db.Value)
		}
	case db.Value != "" || db.ValueFrom == nil || db.ValueFrom.SecretKeyRef == nil ||
		db.ValueFrom.SecretKeyRef.Name != "agate-db" || db.ValueFrom.SecretKeyRef.Key != "url":
		t.Errorf("AGATE_DB = %+v, want secretKeyRef agate-db/url", db)
	}
	for vol, secret := range map[string]string{"tokens": "agate-tokens", "evidence-key": "agate-evidence-key"} {
		v := volumeFrom(pod, vol)
		if v == nil || v.Secret == nil || v.Secret.SecretName != secret {
			t.Errorf("volume %s: want Secret %s, got %+v", vol, secret, v)
			continue
		}
		if m := v.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
			t.Errorf("volume %s: mode %v lets others read the Secret", vol, m)
		}
	}
}

// checkArgsMatchMounts: every file flag points into a volume that is mounted.
func checkArgsMatchMounts(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	c := pod.Containers[0]
	for _, a := range c.Args {
		name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok || !strings.HasPrefix(val, "/") {
			continue
		}
		if !slices.Contains([]string{"tokens", "evidence-key", "tls-cert", "tls-key", "tls-client-ca", "policy", "notifications"}, name) {
			continue
		}
		var found bool
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(val, m.MountPath+"/") && volumeFrom(pod, m.Name) != nil {
				found = true
			}
		}
		if !found {
			t.Errorf("--%s=%s: no volume mounted there", name, val)
		}
	}
}

func checkNoSecretInManifests(t *testing.T, r rendered) {
	t.Helper()
	for _, m := range r.all {
		if _, ok := m.obj.(*corev1.Secret); ok {
			t.Errorf("%s: the chart renders a Secret; it must only reference Secrets the operator made", m.source)
			continue
		}
		if loc := secretShaped.FindStringIndex(m.text); loc != nil {
			t.Errorf("%s: secret-shaped text %q", m.source, m.text[loc[0]:loc[1]])
		}
	}
	d := one[appsv1.Deployment](t, r)
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(strings.TrimLeft(a, "-"), "db") {
			t.Errorf("argument %q: the database URL must not be an argument", a)
		}
	}
}

func volumeFrom(pod corev1.PodSpec, name string) *corev1.Volume {
	for i, v := range pod.Volumes {
		if v.Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func mountedAt(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path && !m.ReadOnly {
			return true
		}
	}
	return false
}

// TestTransportChoiceRequired: serving without TLS is a written choice, never a default.
func TestTransportChoiceRequired(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, values, want string }{
		{"neither", base, "plaintext=true"},
		{"both", base + "plaintext: true\ntls: {existingSecret: agate-tls}\n", "not both"},
		{"client CA without TLS", base + "plaintext: true\ntls: {clientCA: {existingSecret: ca}}\n", "needs tls.existingSecret"},
		{"plaintext as a string", base + "plaintext: \"true\"\n", "plaintext"},
	} {
		_, err := render(t, tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: render error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// TestRefusals: values that would start a broken server, or put a secret where it can be
// read, fail the render with a message naming the value to use instead.
func TestRefusals(t *testing.T) {
	t.Parallel()
	ok := base + "plaintext: true\n"
	for _, tc := range []struct{ name, values, want string }{
		{"no database", "tokens: {existingSecret: t}\nevidenceKey: {existingSecret: k}\nplaintext: true\n", "database.existingSecret is required"},
		{"no tokens", "database: {existingSecret: d}\nevidenceKey: {existingSecret: k}\nplaintext: true\n", "tokens.existingSecret is required"},
		{"no evidence key", "database: {existingSecret: d}\ntokens: {existingSecret: t}\nplaintext: true\n", "evidenceKey.existingSecret is required"},
		{"sqlite with replicas", "database: {sqlite: true}\ntokens: {existingSecret: t}\nevidenceKey: {existingSecret: k}\nplaintext: true\npersistence: {enabled: true}\n", "replicaCount=1"},
		{"sqlite without a volume", "database: {sqlite: true}\ntokens: {existingSecret: t}\nevidenceKey: {existingSecret: k}\nplaintext: true\nreplicaCount: 1\n", "persistence.enabled"},
		{"both policies", ok + "policy: {existingConfigMap: p, inline: 'version: v1'}\n", "not both"},
		{"both PDB bounds", ok + "podDisruptionBudget: {minAvailable: 1, maxUnavailable: 1}\n", "not both"},
		// Each of these would put the database password in the pod spec or a process's
		// arguments, where anyone who can read the Deployment or list processes sees it.
		{"db as a flag", ok + "flags: {db: 'postgres://agate:hunter2@db/agate'}\n", "database.existingSecret"},
		{"db as an extra argument", ok + "extraArgs: ['--db=postgres://agate:hunter2@db/agate']\n", "database.existingSecret"},
		{"db as two extra arguments", ok + "extraArgs: ['-db', 'postgres://agate:hunter2@db/agate']\n", "database.existingSecret"},
		{"db in the environment", ok + "extraEnv: [{name: AGATE_DB, value: 'postgres://agate:hunter2@db/agate'}]\n", "extraEnv may not set AGATE_DB"},
		{"db URL as a value", ok + "database: {url: 'postgres://agate:hunter2@db/agate'}\n", "url"},
		{"tokens inline", ok + "tokens: {content: 's3cr3t'}\n", "content"},
		{"evidence key inline", ok + "evidenceKey: {pem: '-----BEGIN PRIVATE KEY-----'}\n", "pem"},
		{"TLS key inline", ok + "tls: {key: '-----BEGIN PRIVATE KEY-----'}\n", "key"},
		{"tokens file as a flag", ok + "flags: {tokens: /tmp/tokens.yaml}\n", "tokens.existingSecret"},
		{"destinations file as a flag", ok + "flags: {notifications: /tmp/webhooks.yaml}\n", "notifications.existingSecret"},
		{"destinations inline", ok + "notifications: {content: 'secret: whsec_x'}\n", "content"},
		{"config file as a flag", ok + "flags: {config: /tmp/agate.yaml}\n", "no config file"},
		{"listen address as a flag", ok + "flags: {grpc-addr: '127.0.0.1:7070'}\n", "containerPorts.grpc"},
		{"plaintext tokens as a flag", ok + "flags: {insecure-plaintext-tokens: true}\n", "plaintext=true"},
		{"password file as a flag", ok + "flags: {db-password-file: /run/pw}\n", "database.existingSecret"},
		{"profiler", ok + "flags: {pprof: true}\n", "loopback"},
		{"client certificates required without a CA", base + "tls: {existingSecret: t}\nflags: {require-client-cert: true}\n", "tls.clientCA.existingSecret"},
		{"misspelt value", ok + "plaintxt: true\n", "plaintxt"},
		{"probe path override", ok + "livenessProbe: {httpGet: {path: /, port: 1}}\n", "httpGet"},
	} {
		_, err := render(t, tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: render error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// TestDefaultValuesHoldNoSecret: values.yaml (which ends up in the release record that
// anyone with read access to the namespace's Helm secrets sees) only names Secrets.
func TestDefaultValuesHoldNoSecret(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if loc := secretShaped.FindIndex(raw); loc != nil {
		t.Errorf("values.yaml holds secret-shaped text %q", raw[loc[0]:loc[1]])
	}
	var vals map[string]any
	if err := yaml.UnmarshalStrict(raw, &vals); err != nil {
		t.Fatal(err)
	}
	sensitive := regexp.MustCompile(`(?i)password|passwd|token|secret|key|cert|url|dsn|pem|credential`)
	// A sensitive-sounding leaf may only name a Secret or a key within one.
	objectName := regexp.MustCompile(`^[-._a-zA-Z0-9]{0,253}$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		case string:
			if sensitive.MatchString(path) && !objectName.MatchString(v) {
				t.Errorf("values%s = %q: a sensitive value may only name a Secret or one of its keys", path, v)
			}
		}
	}
	walk("", vals)
}

func metav1LabelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}
