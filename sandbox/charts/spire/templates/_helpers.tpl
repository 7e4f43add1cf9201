{{/* <release>-<component>, or the release name alone when it already contains the component (as the real
     subcharts name things). Call with (dict "root" . "name" "server"). */}}
{{- define "spire.fullname" -}}
{{- if contains .name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spire.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "spire.labels" -}}
{{ include "spire.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Labels the ClusterSPIFFEID pod selectors of the real chart rely on. */}}
{{- define "spire.componentLabels" -}}
release: {{ .root.Release.Name }}
release-namespace: {{ .root.Release.Namespace }}
component: {{ .name }}
{{- end -}}

{{- define "spire.trustDomain" -}}
{{- .Values.global.spire.trustDomain -}}
{{- end -}}

{{- define "spire.className" -}}
{{- $cm := (index .Values "spire-server").controllerManager -}}
{{- $cm.className | default (printf "%s-%s" .Release.Namespace .Release.Name) -}}
{{- end -}}

{{/* The namespaces the default ClusterSPIFFEIDs leave out: SPIRE's own. */}}
{{- define "spire.ownNamespaces" -}}
{{- list .Release.Namespace .Values.global.spire.namespaces.server.name .Values.global.spire.namespaces.system.name | compact | uniq | toJson -}}
{{- end -}}

{{- define "spire.kubectlImage" -}}
{{- $image := (index .Values "spire-server").tools.kubectl.image -}}
{{- $tag := $image.tag | default .Values.global.spire.tools.kubectl.tag | default (regexReplaceAll "^(v?\\d+\\.\\d+\\.\\d+).*" .Capabilities.KubeVersion.Version "${1}") -}}
{{- printf "%s/%s:%s" $image.registry $image.repository $tag -}}
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
