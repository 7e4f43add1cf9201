{{/* <release>-<component>, or the release name alone when it already contains the component (as the real
     subcharts name things). Call with (dict "root" . "name" "server"). */}}
{{- define "spire.fullname" -}}
{{- if contains .name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The controller manager's names derive from the server's full name without "-server" (spire-server chart
     _helpers.tpl spire-controller-manager.fullname): its ConfigMap and webhook Service, and the webhook configuration
     <release namespace>-<that>-webhook. */}}
{{- define "spire.controllerManagerName" -}}
{{- include "spire.fullname" (dict "root" . "name" "server") | trimSuffix "-server" -}}-controller-manager
{{- end -}}

{{- define "spire.webhookName" -}}
{{- printf "%s-%s-webhook" .Release.Namespace (include "spire.controllerManagerName" .) -}}
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

{{/* Labels the ClusterSPIFFEID pod selectors of the real chart rely on (server and OIDC discovery provider pods). */}}
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

{{/*
One hook that patches the controller manager's webhooks to `failurePolicy`, as spire-server's post-install-hook.yaml,
pre-upgrade-hook.yaml and post-upgrade-hook.yaml do: a ServiceAccount, ClusterRole and binding for that one webhook
configuration, and a Job running kubectl. Call with (dict "root" . "hook" "post-install" "container" "post-install-job"
"failurePolicy" "Fail"). Rendered only when the hooks are on and the configured policy is Fail, as upstream.
*/}}
{{- define "spire.webhookHook" -}}
{{- $root := .root }}
{{- $server := index $root.Values "spire-server" }}
{{- if and $root.Values.global.installAndUpgradeHooks.enabled (eq $server.controllerManager.validatingWebhookConfiguration.failurePolicy "Fail") }}
{{- $name := printf "%s-%s" (include "spire.fullname" (dict "root" $root "name" "server")) .hook }}
{{- $webhook := include "spire.webhookName" $root }}
{{- $annotations := dict "helm.sh/hook" .hook "helm.sh/hook-delete-policy" "before-hook-creation, hook-succeeded, hook-failed" }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
rules:
  - apiGroups: ["admissionregistration.k8s.io"]
    resources: ["validatingwebhookconfigurations"]
    resourceNames: [{{ $webhook | quote }}]
    verbs: ["get", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
roleRef:
  kind: ClusterRole
  name: {{ $name }}
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "spire.labels" (dict "root" $root "name" "server") | nindent 4 }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
spec:
  template:
    metadata:
      name: {{ $name }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ $name }}
      containers:
        - name: {{ .container }}
          image: {{ include "spire.kubectlImage" $root | quote }}
          args:
            - patch
            - validatingwebhookconfiguration
            - {{ $webhook }}
            - --type=strategic
            - -p
            - |
              {
                "webhooks":[
                  {
                    "name":"vclusterspiffeid.kb.io",
                    "failurePolicy":"{{ .failurePolicy }}"
                  },
                  {
                    "name":"vclusterfederatedtrustdomain.kb.io",
                    "failurePolicy":"{{ .failurePolicy }}"
                  }
                ]
              }
{{- end }}
{{- end -}}
