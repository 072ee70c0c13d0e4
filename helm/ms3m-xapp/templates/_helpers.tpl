{{/* Names follow the O-RAN SC xApp charts: labels app=<namespace>-<name> and release=<release>, Services
service-<namespace>-<name>-<port name>. */}}

{{- define "ms3m.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ms3m.fullname" -}}
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

{{- define "ms3m.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{/* Service name of one port: service-<namespace>-<fullname>-<suffix>, at most 63 characters. */}}
{{- define "ms3m.serviceName" -}}
{{- $base := printf "service-%s-%s" (include "ms3m.namespace" .ctx) (include "ms3m.fullname" .ctx) }}
{{- printf "%s-%s" ($base | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "ms3m.selectorLabels" -}}
app: {{ printf "%s-%s" (include "ms3m.namespace" .) (include "ms3m.fullname" .) | trunc 63 | trimSuffix "-" }}
release: {{ .Release.Name }}
{{- end }}

{{/* Labels of the xApp's objects. */}}
{{- define "ms3m.labels" -}}
{{ include "ms3m.selectorLabels" . }}
app.kubernetes.io/component: xapp
{{ include "ms3m.commonLabels" . }}
{{- end }}

{{/* Labels of the co-deployed Redis: its own app label, so no xApp selector matches it. */}}
{{- define "ms3m.redisSelectorLabels" -}}
app: {{ printf "%s-%s" (include "ms3m.namespace" .) (include "ms3m.redisName" .) | trunc 63 | trimSuffix "-" }}
release: {{ .Release.Name }}
{{- end }}

{{- define "ms3m.redisLabels" -}}
{{ include "ms3m.redisSelectorLabels" . }}
app.kubernetes.io/component: redis
{{ include "ms3m.commonLabels" . }}
{{- end }}

{{- define "ms3m.commonLabels" -}}
app.kubernetes.io/name: {{ include "ms3m.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* registry/repository:tag of an image value; the tag defaults to the chart's appVersion. */}}
{{- define "ms3m.image" -}}
{{- $tag := .image.tag | default .ctx.Chart.AppVersion }}
{{- if .image.registry }}
{{- printf "%s/%s:%s" .image.registry .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{- define "ms3m.redisName" -}}
{{- printf "%s-redis" (include "ms3m.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ms3m.redisHost" -}}
{{- if .Values.redis.deploy }}
{{- include "ms3m.redisName" . }}
{{- else }}
{{- required "redis.external.host is required when redis.deploy is false" .Values.redis.external.host }}
{{- end }}
{{- end }}

{{- define "ms3m.redisPort" -}}
{{- if .Values.redis.deploy }}6379{{ else }}{{ .Values.redis.external.port | default 6379 | int }}{{ end }}
{{- end }}

{{/* The Secret holding the Redis password, or "" when there is none. */}}
{{- define "ms3m.redisSecret" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecret }}
{{- else if .Values.redis.auth.password }}
{{- include "ms3m.redisName" . }}
{{- end }}
{{- end }}

{{- define "ms3m.bundlesClaim" -}}
{{- .Values.bundles.volume.existingClaim | default (printf "%s-bundles" (include "ms3m.fullname" .)) }}
{{- end }}

{{/* An env value from a settings value: strings as they are, numbers and booleans as JSON (1000000, not 1e+06). */}}
{{- define "ms3m.envValue" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ toJson . | quote }}{{ end }}
{{- end }}

{{/* Container security context: non-root, read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "ms3m.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup | default .Values.securityContext.runAsUser }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ms3m.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup | default .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.fsGroup | default .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The Secret holding the auth tokens (entries role:token), or "" when authentication is off. */}}
{{- define "ms3m.authSecret" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if .Values.auth.tokens }}
{{- printf "%s-auth" (include "ms3m.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret of the servers (tls.crt, tls.key, ca.crt), or "" without TLS. */}}
{{- define "ms3m.tlsSecret" -}}
{{- if .Values.tls.enabled }}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "ms3m.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- fail "tls.enabled needs tls.existingSecret or tls.certManager.enabled" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the secrets are mounted in the xApp container (read-only). */}}
{{- define "ms3m.authDir" -}}/etc/ms3m/auth{{- end }}
{{- define "ms3m.tlsDir" -}}/etc/ms3m/tls{{- end }}
{{- define "ms3m.clientCADir" -}}/etc/ms3m/client-ca{{- end }}
{{- define "ms3m.probeClientDir" -}}/etc/ms3m/probe-client{{- end }}
{{- define "ms3m.redisCADir" -}}/etc/ms3m/redis-ca{{- end }}

{{- define "ms3m.clientCAFile" -}}
{{- if .Values.tls.clientCA.existingSecret }}
{{- printf "%s/ca.crt" (include "ms3m.clientCADir" .) }}
{{- else }}
{{- printf "%s/ca.crt" (include "ms3m.tlsDir" .) }}
{{- end }}
{{- end }}

{{/* DNS names of the xApp's Services (the TLS certificate's subject alternative names). */}}
{{- define "ms3m.tlsDnsNames" -}}
{{- $ns := include "ms3m.namespace" . }}
{{- $names := list }}
{{- range $port := list "http" "grpc" }}
{{- $svc := include "ms3m.serviceName" (dict "ctx" $ "suffix" $port) }}
{{- $fqdn := printf "%s.%s.svc.%s" $svc $ns $.Values.tls.certManager.clusterDomain }}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) $fqdn) }}
{{- end }}
{{- concat $names .Values.tls.certManager.extraDnsNames | uniq | toJson }}
{{- end }}

{{/* A probe's handler: httpGet (HTTPS with TLS: the kubelet does not verify the certificate), or with mTLS,
where the kubelet has no client certificate, an exec of the image's ms3m-healthcheck presenting the probe client
certificate (the pod's own unless tls.clientCA.probeSecret). */}}
{{- define "ms3m.probeHandler" -}}
{{- $v := .ctx.Values }}
{{- if and $v.tls.enabled $v.tls.clientCA.enabled }}
{{- $dir := ternary (include "ms3m.probeClientDir" .ctx) (include "ms3m.tlsDir" .ctx) (ne $v.tls.clientCA.probeSecret "") }}
exec:
  command:
    - python
    - /usr/local/bin/ms3m-healthcheck
    - --path
    - {{ .path }}
    - --port
    - {{ $v.ports.http | int | quote }}
    - --tls
    - --cert
    - {{ printf "%s/tls.crt" $dir }}
    - --key
    - {{ printf "%s/tls.key" $dir }}
{{- else }}
httpGet:
  path: {{ .path }}
  port: http
  {{- if $v.tls.enabled }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}
