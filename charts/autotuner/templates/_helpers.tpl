{{- define "autotuner.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "autotuner.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "autotuner.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "autotuner.redisURL" -}}
{{- if .Values.redis.enabled -}}
redis://{{ include "autotuner.fullname" . }}-redis:6379/0
{{- else -}}
{{ required "redis.url is required when redis.enabled is false" .Values.redis.url }}
{{- end -}}
{{- end -}}
