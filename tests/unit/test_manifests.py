"""Tests for meshid.manifests: the guide's objects, field for field, rendered from GuideParams."""

from __future__ import annotations

import yaml

from meshid.manifests import (
    MANAGED_BY_LABEL,
    RUN_ID_ANNOTATION,
    cluster_spiffe_id,
    demo_objects,
    injection_env_values,
    mesh_identity,
    spire_values,
    stamp,
    traffic_permission,
)
from meshid.models import parse_params

# The guide's YAML ("Issue identity with MeshIdentity Spire provider", Kong Mesh 2.12), step 2.
GUIDE_DEMO = """
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
      app: kv
"""

GUIDE_CLUSTER_SPIFFE_ID = """
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata:
  name: spire-registration
spec:
  podSelector:
    matchLabels:
      kuma.io/mesh: default
  spiffeIDTemplate: 'spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}'
  workloadSelectorTemplates:
    - 'k8s:ns:kong-mesh-demo'
"""

GUIDE_MESH_IDENTITY = """
apiVersion: kuma.io/v1alpha1
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
    spire: {}
"""

GUIDE_MTP = """
apiVersion: kuma.io/v1alpha1
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
              value: spiffe://default.default.mesh.local/ns/kong-mesh-demo
"""

DEFAULTS = parse_params({})


def test_demo_objects_match_the_guide():
    assert demo_objects(DEFAULTS) == list(yaml.safe_load_all(GUIDE_DEMO))


def test_cluster_spiffe_id_matches_the_guide():
    assert cluster_spiffe_id(DEFAULTS) == yaml.safe_load(GUIDE_CLUSTER_SPIFFE_ID)


def test_mesh_identity_matches_the_guide():
    assert mesh_identity(DEFAULTS) == yaml.safe_load(GUIDE_MESH_IDENTITY)


def test_traffic_permission_matches_the_guide():
    assert traffic_permission(DEFAULTS) == yaml.safe_load(GUIDE_MTP)


def test_helm_values_match_the_guide():
    assert spire_values(DEFAULTS) == [
        "global.spire.trustDomain=default.default.mesh.local",
        "global.spire.tools.kubectl.tag=v1.31.11",
    ]
    assert injection_env_values(DEFAULTS) == [
        "kuma.controlPlane.envVars.KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true"
    ]


def test_chart_class_adds_the_spire_controller_class():
    params = parse_params({"registration": "chart-class", "namespaces": {"spire": "spire-system"}})
    assert cluster_spiffe_id(params)["spec"]["className"] == "spire-system-spire"
    assert "className" not in cluster_spiffe_id(DEFAULTS)["spec"]


def test_parameters_flow_into_every_object():
    params = parse_params({
        "trust_domain": "prod.example.org",
        "spire_trust_domain": "spire.example.org",
        "identity_path": '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}',
        "namespaces": {"demo": "demo", "control_plane": "mesh-system"},
        "permission": {"type": "Exact", "value": "spiffe://prod.example.org/ns/demo/sa/default"},
        "charts": {"kubectl_hook_tag": "v1.30.0"},
    })
    objects = demo_objects(params)
    assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in objects[:8]} == {"demo"}
    env = objects[5]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KV_URL", "value": "http://kv.demo.svc.cluster.local:5050"} in env
    assert objects[-1]["spec"]["from"][0]["targetRef"]["tags"]["k8s.kuma.io/namespace"] == "demo"
    assert cluster_spiffe_id(params)["spec"]["workloadSelectorTemplates"] == ["k8s:ns:demo"]
    mi = mesh_identity(params)
    assert mi["metadata"]["namespace"] == "mesh-system" and mi["spec"]["spiffeID"]["trustDomain"] == "prod.example.org"
    assert traffic_permission(params)["spec"]["rules"][0]["default"]["allow"] == [
        {"spiffeID": {"type": "Exact", "value": "spiffe://prod.example.org/ns/demo/sa/default"}}
    ]
    assert spire_values(params) == [
        "global.spire.trustDomain=spire.example.org", "global.spire.tools.kubectl.tag=v1.30.0"
    ]


def test_objects_share_no_mutable_state():
    dumped = yaml.safe_dump_all(demo_objects(DEFAULTS))
    assert "&id" not in dumped and "*id" not in dumped
    first = demo_objects(DEFAULTS)
    first[1]["spec"]["selector"]["app"] = "changed"
    assert demo_objects(DEFAULTS)[1]["spec"]["selector"]["app"] == "demo-app"


def test_stamp_labels_and_annotates_a_copy():
    original = mesh_identity(DEFAULTS)
    stamped = stamp(original, "run-42")
    assert stamped["metadata"]["labels"] == {
        "kuma.io/mesh": "default", "kuma.io/origin": "zone", MANAGED_BY_LABEL: "meshid"
    }
    assert stamped["metadata"]["annotations"] == {RUN_ID_ANNOTATION: "run-42"}
    assert MANAGED_BY_LABEL not in original["metadata"]["labels"] and "annotations" not in original["metadata"]
    assert stamped["spec"] == original["spec"]
    assert MANAGED_BY_LABEL == "app.kubernetes.io/managed-by" and RUN_ID_ANNOTATION == "meshid.io/run-id"


def test_stamp_every_demo_object():
    for obj in (stamp(o, "r") for o in demo_objects(DEFAULTS)):
        assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == "meshid"
        assert obj["metadata"]["annotations"][RUN_ID_ANNOTATION] == "r"


def test_spire_persistence_is_the_charts_default_unless_asked():
    from meshid.manifests import spire_values
    from meshid.models import parse_params

    assert not any("persistence" in v for v in spire_values(parse_params({})))
    assert "spire-server.persistence.type=emptyDir" in spire_values(parse_params({"spire_persistence": "emptyDir"}))


def test_the_identity_selector_reaches_the_meshidentity_and_the_demos_and_probes_pods():
    from meshid.manifests import demo_objects, mesh_identity, probe_objects
    from meshid.models import parse_params

    params = parse_params({"identity_selector": {"mesh-identity": "spire"}})
    assert mesh_identity(params)["spec"]["selector"] == {"dataplane": {"matchLabels": {"mesh-identity": "spire"}}}
    deployments = [o for o in demo_objects(params) + probe_objects(params) if o["kind"] == "Deployment"]
    assert len(deployments) == 4
    for dep in deployments:
        assert dep["spec"]["template"]["metadata"]["labels"]["mesh-identity"] == "spire"
        assert "mesh-identity" not in dep["spec"]["selector"]["matchLabels"], "a selector change would not apply"
    probe = next(d for d in deployments if d["metadata"]["name"] == "meshid-probe")
    assert probe["metadata"]["namespace"] == "meshid-probe"
    env = {e["name"]: e.get("value") for e in probe["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KV_URL"] == "http://kv.kong-mesh-demo.svc.cluster.local:5050", "the probe is a client of the demo's kv"
    assert mesh_identity(parse_params({}))["spec"]["selector"] == {"dataplane": {"matchLabels": {}}}
