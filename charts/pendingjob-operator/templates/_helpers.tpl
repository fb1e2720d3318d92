{{/*
The labels Helm's conventions add to every object this chart renders, on top
of each object's own (tests/chart.rs ignores exactly these four when it
compares the chart with deploy/).
*/}}
{{- define "pendingjob.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The operator's image, pendingjob-intake's too (one image holds both). */}}
{{- define "pendingjob.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The restricted Pod Security Standard's settings, for a pod and its container. */}}
{{- define "pendingjob.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}
{{- define "pendingjob.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* Scheduling settings shared by the operator's and the intake's pods: VALUES is the component's. */}}
{{- define "pendingjob.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* `--flag=value` for each VALUES entry that is set: DICT is a list of [flag, value]. */}}
{{- define "pendingjob.optionalArgs" -}}
{{- range . }}
{{- if not (kindIs "invalid" (index . 1)) }}
- --{{ index . 0 }}={{ index . 1 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The OpenTelemetry variables of both containers, from .Values.tracing: none
unless tracing.otlpEndpoint is set (tracing is then on).
*/}}
{{- define "pendingjob.tracingEnv" -}}
{{- $t := .Values.tracing -}}
{{- if $t.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.otlpEndpoint | quote }}
{{- with $t.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with $t.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- range $t.extraEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end }}
{{- end }}
