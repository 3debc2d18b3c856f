{{/* The chart's name, at most 63 characters. */}}
{{- define "eto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: namespaced object names, at most 50 characters so suffixes fit in 63. */}}
{{- define "eto.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Names of cluster-scoped objects carry the release namespace too, so that releases of the same name in
different namespaces never share (or fight over) a ClusterRole. */}}
{{- define "eto.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "eto.fullname" .) | trunc 200 | trimSuffix "-" }}
{{- end }}

{{- define "eto.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "eto.labels" -}}
helm.sh/chart: {{ include "eto.chart" . }}
{{ include "eto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: elastic-training-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "eto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eto.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "eto.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "eto.tokenSecretName" -}}
{{- default (printf "%s-token-key" (include "eto.fullname" .)) .Values.tokenKey.existingSecret }}
{{- end }}

{{- define "eto.reportUrl" -}}
{{- default (printf "http://%s-reports.%s.svc:%d" (include "eto.fullname" .) .Release.Namespace (int .Values.operator.ports.report)) .Values.operator.reportUrl }}
{{- end }}

{{/* The operator's API access, from rbac/rules.yaml (the one list; see that file). */}}
{{- define "eto.rules" -}}
{{- $rules := .Files.Get "rbac/rules.yaml" | fromYaml }}
{{- if or (not $rules) (hasKey $rules "Error") }}
{{- fail (printf "rbac/rules.yaml is missing or not valid YAML: %v" $rules) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
