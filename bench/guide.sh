#!/usr/bin/env bash
# The guide "Issue identity with MeshIdentity Spire provider" (Kong Mesh 2.12), command for command, against a fresh
# sandbox: the verbatim check that the sandbox shows what the guide shows (tests/sandbox/test_emulator_guide_sh.py)
# and the shell side of the pipeline's benchmark (bench/guide_vs_shell.py). It sits above meshid, as a person
# following the guide does: the sandbox comes from the `meshid` command.
#
#   bench/guide.sh          run it; exit 0 when the first curl answers HTTP 500 "failed to retrieve zone" and the
#                           curl after the MeshTrafficPermission answers {"counter":1,"zone":""}
#   SANDBOX_TICK=1 ...      a faster emulator tick (default 5 s, like Kong Mesh's control plane)
#
# Only two things differ from the guide: the cluster comes from `meshid sandbox up` instead of `minikube start`,
# and the chart repository URLs point at the sandbox's repository. Needs meshid (.venv or PATH), kubectl, curl, jq.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
meshid=${MESHID:-$here/../.venv/bin/meshid}
[ -x "$meshid" ] || meshid=meshid
name=guide-$$
work=$(mktemp -d)
port_forward=""

step() { printf '\n### %s\n' "$*" >&2; }
cleanup() {
  [ -z "$port_forward" ] || kill "$port_forward" 2>/dev/null || true
  "$meshid" sandbox down --name "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "Prerequisites: a cluster (the sandbox instead of minikube start -p mesh-zone)"
KUBECONFIG=$("$meshid" sandbox up --name "$name" --tick "${SANDBOX_TICK:-5}")
export KUBECONFIG
repo=$("$meshid" sandbox status -o json | jq -r --arg n "$name" '.[] | select(.name == $n) | .chart_repo_url')
KONG_MESH_CHARTS=$repo          # the guide: https://kong.github.io/kong-mesh-charts
SPIFFE_CHARTS=$repo             # the guide: https://spiffe.github.io/helm-charts-hardened
export PATH="${MESHID_HOME:-$HOME/.cache/meshid}/bin/current:$PATH"  # helm, as the sandbox built it
export HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data

step "1. Install Kong Mesh"
helm repo add kong-mesh "$KONG_MESH_CHARTS"
helm repo update
helm upgrade \
  --install \
  --create-namespace \
  --namespace kong-mesh-system \
  kong-mesh kong-mesh/kong-mesh
kubectl wait -n kong-mesh-system --for=condition=ready pod --selector=app=kong-mesh-control-plane --timeout=90s

step "2. Apply the demo configuration"
echo "
apiVersion: v1
kind: Namespace
metadata:
  labels:
    kuma.io/sidecar-injection: enabled
  name: kong-mesh-demo
---
apiVersion: v1
kind: Service
metadata:
  name: demo-app
  namespace: kong-mesh-demo
spec:
  ports:
  - appProtocol: http
    port: 5050
    protocol: TCP
    targetPort: 5050
  selector:
    app: demo-app
---
apiVersion: v1
kind: Service
metadata:
  name: demo-app-v1
  namespace: kong-mesh-demo
spec:
  ports:
  - appProtocol: http
    port: 5050
    protocol: TCP
    targetPort: 5050
  selector:
    app: demo-app
    version: v1
---
apiVersion: v1
kind: Service
metadata:
  name: demo-app-v2
  namespace: kong-mesh-demo
spec:
  ports:
  - appProtocol: http
    port: 5050
    protocol: TCP
    targetPort: 5050
  selector:
    app: demo-app
    version: v2
---
apiVersion: v1
kind: Service
metadata:
  name: kv
  namespace: kong-mesh-demo
spec:
  ports:
  - appProtocol: http
    port: 5050
    protocol: TCP
    targetPort: 5050
  selector:
    app: kv
---
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: demo-app
    version: v1
  name: demo-app
  namespace: kong-mesh-demo
spec:
  replicas: 1
  selector:
    matchLabels:
      app: demo-app
      version: v1
  template:
    metadata:
      labels:
        app: demo-app
        version: v1
    spec:
      containers:
      - env:
        - name: OTEL_SERVICE_NAME
          value: demo-app
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: http://opentelemetry-collector.mesh-observability:4317
        - name: KV_URL
          value: http://kv.kong-mesh-demo.svc.cluster.local:5050
        - name: APP_VERSION
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['version']
        image: ghcr.io/kumahq/kuma-counter-demo:latest@sha256:daf8f5cffa10b576ff845be84e4e3bd5a8a6470c7e66293c5e03a148f08ac148
        name: app
        ports:
        - containerPort: 5050
          name: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: demo-app
    version: v2
  name: demo-app-v2
  namespace: kong-mesh-demo
spec:
  replicas: 0
  selector:
    matchLabels:
      app: demo-app
      version: v2
  template:
    metadata:
      labels:
        app: demo-app
        version: v2
    spec:
      containers:
      - env:
        - name: OTEL_SERVICE_NAME
          value: demo-app
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: http://opentelemetry-collector.mesh-observability:4317
        - name: KV_URL
          value: http://kv.kong-mesh-demo.svc.cluster.local:5050
        - name: APP_VERSION
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['version']
        image: ghcr.io/kumahq/kuma-counter-demo:latest@sha256:daf8f5cffa10b576ff845be84e4e3bd5a8a6470c7e66293c5e03a148f08ac148
        name: demo-app
        ports:
        - containerPort: 5050
          name: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kv
  namespace: kong-mesh-demo
spec:
  replicas: 1
  selector:
    matchLabels:
      app: kv
  template:
    metadata:
      labels:
        app: kv
    spec:
      containers:
      - env:
        - name: OTEL_SERVICE_NAME
          value: kv
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: http://opentelemetry-collector.mesh-observability:4317
        - name: APP_VERSION
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['version']
        image: ghcr.io/kumahq/kuma-counter-demo:latest@sha256:daf8f5cffa10b576ff845be84e4e3bd5a8a6470c7e66293c5e03a148f08ac148
        name: app
        ports:
        - containerPort: 5050
          name: http
---
apiVersion: kuma.io/v1alpha1
kind: Mesh
metadata:
  name: default
spec:
  meshServices:
    mode: Exclusive
  mtls:
    backends:
    - name: ca-1
      type: builtin
    enabledBackend: ca-1
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata:
  name: kv
  namespace: kong-mesh-demo
spec:
  from:
  - default:
      action: Allow
    targetRef:
      kind: MeshSubset
      tags:
        app: demo-app
        k8s.kuma.io/namespace: kong-mesh-demo
  targetRef:
    kind: Dataplane
    labels:
      app: kv" | kubectl apply -f -
kubectl wait -n kong-mesh-demo --for=condition=available --timeout=120s deployment --all

step "3. Install the Spire CRDs"
helm upgrade --install --create-namespace -n spire spire-crds spire-crds \
  --repo "$SPIFFE_CHARTS"/

step "4. Install Spire with the trust domain default.default.mesh.local"
helm upgrade --install -n spire spire spire \
  --repo "$SPIFFE_CHARTS"/ \
  --set "global.spire.trustDomain=default.default.mesh.local" \
  --set "global.spire.tools.kubectl.tag=v1.31.11"
kubectl wait -n spire --for=condition=ready pod --all --timeout=90s

step "Enable Spire injection on the control plane"
kubectl set env -n kong-mesh-system deploy/kong-mesh-control-plane \
  KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true
kubectl rollout status -n kong-mesh-system deploy/kong-mesh-control-plane

step "Configure Spire"
echo "apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata:
  name: spire-registration
spec:
  podSelector:
    matchLabels:
      kuma.io/mesh: default
  spiffeIDTemplate: 'spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}'
  workloadSelectorTemplates:
    - 'k8s:ns:kong-mesh-demo'" | kubectl apply -f -

step "Issue identities"
echo "apiVersion: kuma.io/v1alpha1
kind: MeshIdentity
metadata:
  name: identity-spire
  namespace: kong-mesh-system
  labels:
    kuma.io/mesh: default
    kuma.io/origin: zone
spec:
  selector:
    dataplane:
      matchLabels: {}
  spiffeID:
    trustDomain: default.default.mesh.local
    path: '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}'
  provider:
    type: Spire
    spire: {}" | kubectl apply -f -

step "Restart the demo application"
kubectl rollout restart -n kong-mesh-demo deployment/demo-app deployment/kv
# "Wait until the Pods are restarted before moving on to the next step."
kubectl rollout status -n kong-mesh-demo deployment/demo-app --timeout=120s
kubectl rollout status -n kong-mesh-demo deployment/kv --timeout=120s

step "Test connectivity"
# 1. (in a new terminal of its own)
kubectl port-forward svc/demo-app -n kong-mesh-demo 5050:5050 >"$work/port-forward.log" 2>&1 &
port_forward=$!
for _ in $(seq 100); do grep -q "Forwarding from" "$work/port-forward.log" && break; sleep 0.1; done
# 2.
denied=$(curl -XPOST localhost:5050/api/counter)
echo "$denied"

step "Allow traffic"
echo "apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata:
  name: mtp
  namespace: kong-mesh-demo
  labels:
    kuma.io/mesh: default
spec:
  rules:
    - default:
        allow:
          - spiffeID:
              type: Prefix
              value: spiffe://default.default.mesh.local/ns/kong-mesh-demo" | kubectl apply -f -

step "Validate"
# "If you still get the error, wait a few seconds and try again."
for attempt in $(seq 30); do
  allowed=$(curl -XPOST localhost:5050/api/counter)
  echo "$allowed"
  jq -e '.title == "failed to retrieve zone"' >/dev/null 2>&1 <<<"$allowed" || break
  sleep 2
done

step "Result"
ok=0
if jq -e '.status == 500 and .title == "failed to retrieve zone" and (.instance | test("^[0-9a-f]{32}$"))
          and .type == "https://github.com/kumahq/kuma-counter-demo/blob/main/ERRORS.md#INTERNAL-ERROR"' \
    >/dev/null 2>&1 <<<"$denied"; then
  echo "before the MeshTrafficPermission: HTTP 500 failed to retrieve zone, as the guide shows"
else
  echo "before the MeshTrafficPermission: expected the 500 failed to retrieve zone, got: $denied"; ok=1
fi
if [ "$allowed" = '{"counter":1,"zone":""}' ]; then
  echo "after the MeshTrafficPermission: $allowed (attempt $attempt), as the guide shows"
else
  echo "after the MeshTrafficPermission: expected {\"counter\":1,\"zone\":\"\"}, got: $allowed"; ok=1
fi
exit "$ok"
