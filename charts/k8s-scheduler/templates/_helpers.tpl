{{- define "k8s-scheduler.name" -}}k8s-scheduler{{- end -}}

{{- define "k8s-scheduler.labels" -}}
app.kubernetes.io/name: k8s-scheduler
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: k8s-scheduler
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "k8s-scheduler.operator.selector" -}}
app.kubernetes.io/name: k8s-scheduler
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "k8s-scheduler.operator.fullname" -}}{{ .Release.Name }}-operator{{- end -}}
