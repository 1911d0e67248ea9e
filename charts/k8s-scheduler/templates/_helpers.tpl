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

{{- define "k8s-scheduler.server.selector" -}}
app.kubernetes.io/name: k8s-scheduler
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "k8s-scheduler.server.fullname" -}}{{ .Release.Name }}-server{{- end -}}

{{/* The server's public host: the Ingress host, and the host of BASE_URL and GOOGLE_REDIRECT_URL. */}}
{{- define "k8s-scheduler.server.host" -}}{{ .Values.server.ingress.host | default (printf "app.%s" .Values.domain) }}{{- end -}}

{{/*
BASE_URL: <server.url.scheme>://<host>[:<server.url.port>]; GOOGLE_REDIRECT_URL is it + /oauth2/callback.
http (with a port) is for a local install behind a gateway without TLS.
*/}}
{{- define "k8s-scheduler.server.baseUrl" -}}
{{- $port := .Values.server.url.port | toString -}}
{{ .Values.server.url.scheme }}://{{ include "k8s-scheduler.server.host" . }}{{ if $port }}:{{ $port }}{{ end }}
{{- end -}}

{{- define "k8s-scheduler.server.image" -}}"{{ .Values.server.image.repository }}:{{ .Values.server.image.tag | default .Chart.AppVersion }}"{{- end -}}

{{/* Pod and container security of the server and its migration Job: Pod Security "restricted". */}}
{{- define "k8s-scheduler.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{- define "k8s-scheduler.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: { drop: ["ALL"] }
{{- end -}}

{{/* Whether the server pods get a Vault Agent sidecar that keeps /vault/secrets/token fresh. */}}
{{- define "k8s-scheduler.server.vaultAgent" -}}
{{- if and .Values.vault.agentInject.enabled (eq .Values.secrets.backend "vault") }}true{{ end -}}
{{- end -}}

{{/*
Whether the server writes the apps' Secrets (`<app>-secrets`) itself: only without a
ClusterSecretStore. With one (operator.clusterSecretStore), the operator's ExternalSecrets own
those Secrets, the server writes none (apiserver deliver_secrets), and the server's per-sandbox
ClusterRole (<release>-server-sandbox) has no rule on Secrets.
*/}}
{{- define "k8s-scheduler.server.writesSecrets" -}}
{{- if not .Values.operator.clusterSecretStore }}true{{ end -}}
{{- end -}}

{{/* The ClusterRole the operator binds to the server in each sandbox namespace (SERVER_SANDBOX_CLUSTER_ROLE). */}}
{{- define "k8s-scheduler.server.sandboxRole" -}}{{ include "k8s-scheduler.server.fullname" . }}-sandbox{{- end -}}

{{/* Kubernetes user names of the two ServiceAccounts (request.userInfo.username). */}}
{{- define "k8s-scheduler.operator.user" -}}system:serviceaccount:{{ .Release.Namespace }}:{{ include "k8s-scheduler.operator.fullname" . }}{{- end -}}
{{- define "k8s-scheduler.server.user" -}}system:serviceaccount:{{ .Release.Namespace }}:{{ include "k8s-scheduler.server.fullname" . }}{{- end -}}
