{{/* The chart's name, or nameOverride. */}}
{{- define "agate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource names: fullnameOverride, else the release name with the chart's name. */}}
{{- define "agate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "agate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The flags that only the chart sets, each with the value that sets it instead. */}}
{{- define "agate.reservedFlags" -}}
config: "the chart's values (there is no config file)"
db: "database.existingSecret (the URL holds a password and must not be an argument)"
tokens: "tokens.existingSecret"
evidence-key: "evidenceKey.existingSecret"
notifications: "notifications.existingSecret (the file holds signing secrets)"
tls-cert: "tls.existingSecret"
tls-key: "tls.existingSecret"
tls-client-ca: "tls.clientCA.existingSecret"
policy: "policy.existingConfigMap or policy.inline"
grpc-addr: "containerPorts.grpc"
http-addr: "containerPorts.http"
insecure-plaintext-tokens: "plaintext=true"
db-password-file: "database.existingSecret (put the password in the URL)"
{{- end }}

{{/*
agate.validate fails the render with a message naming the value to set whenever the
values would start a server that cannot work or that exposes a secret.
*/}}
{{- define "agate.validate" -}}
{{- $v := .Values }}
{{- if and $v.tls.existingSecret $v.plaintext }}
{{- fail "agate: set either tls.existingSecret or plaintext=true, not both" }}
{{- end }}
{{- if not (or $v.tls.existingSecret $v.plaintext) }}
{{- fail "agate: choose the gRPC transport: set tls.existingSecret to a kubernetes.io/tls Secret, or set plaintext=true to serve without TLS (only behind a mesh or proxy that encrypts)" }}
{{- end }}
{{- if and $v.tls.clientCA.existingSecret (not $v.tls.existingSecret) }}
{{- fail "agate: tls.clientCA.existingSecret needs tls.existingSecret (client certificates need TLS)" }}
{{- end }}
{{- if and $v.database.existingSecret $v.database.sqlite }}
{{- fail "agate: set either database.existingSecret or database.sqlite=true, not both" }}
{{- end }}
{{- if not (or $v.database.existingSecret $v.database.sqlite) }}
{{- fail "agate: database.existingSecret is required: a Secret holding the postgres:// or postgresql:// URL (PostgreSQL or CockroachDB) under database.key" }}
{{- end }}
{{- if and $v.database.sqlite (ne (int $v.replicaCount) 1) }}
{{- fail "agate: database.sqlite=true runs one replica only: set replicaCount=1, or use PostgreSQL or CockroachDB" }}
{{- end }}
{{- if and $v.database.sqlite (not $v.persistence.enabled) }}
{{- fail "agate: database.sqlite=true needs persistence.enabled=true, or the database is lost with the pod" }}
{{- end }}
{{- if not $v.tokens.existingSecret }}
{{- fail "agate: tokens.existingSecret is required: a Secret holding the tokens file under tokens.key" }}
{{- end }}
{{- if not $v.evidenceKey.existingSecret }}
{{- fail "agate: evidenceKey.existingSecret is required: a Secret holding the evidence signing key under evidenceKey.key (every replica must share one key)" }}
{{- end }}
{{- if and $v.policy.existingConfigMap $v.policy.inline }}
{{- fail "agate: set either policy.existingConfigMap or policy.inline, not both" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (include "agate.pdbSet" (list $v.podDisruptionBudget "minAvailable")) (include "agate.pdbSet" (list $v.podDisruptionBudget "maxUnavailable")) }}
{{- fail "agate: podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- $reserved := include "agate.reservedFlags" . | fromYaml }}
{{- range $name, $_ := $v.flags }}
{{- if hasKey $reserved $name }}
{{- fail (printf "agate: flags.%s is set by the chart: use %s" $name (get $reserved $name)) }}
{{- end }}
{{- end }}
{{- if eq (toString (get $v.flags "pprof")) "true" }}
{{- fail "agate: flags.pprof needs a loopback --http-addr, which the probes and Prometheus cannot reach; profile a replica locally instead" }}
{{- end }}
{{- if and (eq (toString (get $v.flags "require-client-cert")) "true") (not $v.tls.clientCA.existingSecret) }}
{{- fail "agate: flags.require-client-cert needs tls.clientCA.existingSecret (the CA that signs client certificates)" }}
{{- end }}
{{- range $arg := $v.extraArgs }}
{{- $flag := regexReplaceAll "^-{1,2}([^=]*).*$" (toString $arg) "${1}" }}
{{- if and (hasPrefix "-" (toString $arg)) (hasKey $reserved $flag) }}
{{- fail (printf "agate: extraArgs may not set --%s: use %s" $flag (get $reserved $flag)) }}
{{- end }}
{{- end }}
{{- range $e := $v.extraEnv }}
{{- if hasPrefix "AGATE_" (upper (toString $e.name)) }}
{{- fail (printf "agate: extraEnv may not set %s: set agate's flags through flags, its secrets through the chart's Secret values" $e.name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* A flag's value as text; YAML numbers reach templates as floats. */}}
{{- define "agate.flagValue" -}}
{{- if kindIs "float64" . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* agate.pdbSet is non-empty when the PDB value named by (list pdb name) is set: a null in
the values removes the key. */}}
{{- define "agate.pdbSet" -}}
{{- $pdb := index . 0 }}{{- $name := index . 1 }}
{{- if and (hasKey $pdb $name) (not (kindIs "invalid" (get $pdb $name))) }}set{{ end }}
{{- end }}
