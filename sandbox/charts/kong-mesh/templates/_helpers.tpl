{{- define "kuma.name" -}}
{{- default .Chart.Name .Values.kuma.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kuma.controlPlane.name" -}}
{{- printf "%s-control-plane" (include "kuma.name" .) -}}
{{- end -}}

{{- define "kuma.selectorLabels" -}}
app: {{ include "kuma.controlPlane.name" . }}
app.kubernetes.io/name: {{ include "kuma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kuma.labels" -}}
{{ include "kuma.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Where the sandbox's mesh emulator serves the admission webhooks: it publishes its URL and CA in the ConfigMap
kube-public/meshid-sandbox-emulator when it starts. Rendered as JSON for `fromJson`. Without a cluster (helm template,
helm lint) lookup returns nothing for every object, and a placeholder is rendered instead of failing.
*/}}
{{- define "sandbox.emulator" -}}
{{- $published := lookup "v1" "ConfigMap" "kube-public" "meshid-sandbox-emulator" -}}
{{- if $published -}}
{{- $published.data | toJson -}}
{{- else if lookup "v1" "Namespace" "" "kube-system" -}}
{{- fail "this chart needs the sandbox's mesh emulator, which publishes the ConfigMap kube-public/meshid-sandbox-emulator when it starts: install it into a cluster started with `meshid sandbox up`, or read <sandbox state dir>/logs/emulator.log to see why the emulator is not running" -}}
{{- else -}}
{{- dict "url" "https://127.0.0.1:1" "caBundle" "" | toJson -}}
{{- end -}}
{{- end -}}

{{/*
Annotations of a hook object: (dict "hook" "pre-install" "weight" "-1" "policy" "before-hook-creation,...").
*/}}
{{- define "kuma.hookAnnotations" -}}
"helm.sh/hook": {{ .hook | quote }}
{{- with .weight }}
"helm.sh/hook-weight": {{ . | quote }}
{{- end }}
"helm.sh/hook-delete-policy": {{ .policy | default "before-hook-creation,hook-succeeded,hook-failed" | quote }}
{{- end -}}

{{/*
The ServiceAccount, ClusterRole and ClusterRoleBinding of a hook Job, as each of Kuma's hook templates declares them:
(dict "root" . "name" "<account and role name>" "hook" "pre-install" "weight" "" "rules" (list ...)).
*/}}
{{- define "kuma.hookAccess" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  annotations:
    {{- include "kuma.hookAnnotations" . | nindent 4 }}
  labels:
    {{- include "kuma.labels" .root | nindent 4 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .name }}
  annotations:
    {{- include "kuma.hookAnnotations" . | nindent 4 }}
  labels:
    {{- include "kuma.labels" .root | nindent 4 }}
rules:
  {{- toYaml .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .name }}
  annotations:
    {{- include "kuma.hookAnnotations" . | nindent 4 }}
  labels:
    {{- include "kuma.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ .name }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}

{{- define "kuma.kubectlImage" -}}
{{- printf "%s/%s:%s" .Values.kuma.kubectl.image.registry .Values.kuma.kubectl.image.repository .Values.kuma.kubectl.image.tag -}}
{{- end -}}
