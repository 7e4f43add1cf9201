"""The check catalogue: a stable code, severity, title and fix hint per check, like `linkerd check`, and the one
function that evaluates each.

A check's evaluator turns the facts observed (objects read from the cluster, probe answers, parameters) into its
judgement (passed, detail). It lives next to where those facts are read and registers itself with
`@checks.evaluates(checks.MIDnnn)`: this module stays free of the cluster, probe and stage modules the evaluators
need, and a second evaluator for a code fails at import. Stages and `meshid check` judge a check only through its
record (`checks.MID030.result(crs, params)`); `failed` is for a check whose facts could not be observed (a wait that
gave up, a call that failed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from meshid.reports import markdown_table
from meshid.results import CheckResult, Outcome, Severity

Judgement = tuple[bool, str]  # (passed, detail)
Evaluator = Callable[..., Judgement]
E = TypeVar("E", bound=Evaluator)
_EVALUATORS: dict[str, Evaluator] = {}


@dataclass(frozen=True)
class CheckSpec:
    """One catalogue entry; the code never changes meaning once released."""

    code: str
    title: str
    severity: Severity
    hint: str

    @property
    def evaluator(self) -> Evaluator:
        """The function that judges this check (registered by its module with `evaluates`)."""
        try:
            return _EVALUATORS[self.code]
        except KeyError:
            raise LookupError(f"{self.code} has no evaluator: the module that defines it is not imported") from None

    def evaluate(self, *facts: Any, **named: Any) -> Judgement:
        """This check's judgement of the facts: (passed, detail)."""
        return self.evaluator(*facts, **named)

    def result(self, *facts: Any, **named: Any) -> CheckResult:
        """This check's result for the facts."""
        return result(self, *self.evaluate(*facts, **named))

    def failed(self, why: str) -> CheckResult:
        """This check failed because its facts could not be observed: `why` (a wait that gave up, a call that
        failed)."""
        return result(self, False, why)


_FAIL, _WARN = Severity.FAIL, Severity.WARN

MID001 = CheckSpec(
    "MID001", "Required tools present (helm, kubectl) at supported versions", _FAIL,
    "Install helm 3 and a kubectl within one minor version of the cluster and put them on PATH.",
)
MID002 = CheckSpec(
    "MID002", "Cluster reachable and API version known", _FAIL,
    "Check the kubeconfig context and that the API server answers `kubectl version`.",
)
MID003 = CheckSpec(
    "MID003", "Trust domains consistent (SPIRE, MeshIdentity, MeshTrafficPermission)", _FAIL,
    "Use one trust domain for `global.spire.trustDomain`, the MeshIdentity `spiffeID.trustDomain` and the "
    "MeshTrafficPermission prefix: SPIRE must issue the rendered SPIFFE ID byte for byte, or traffic stays "
    "denied after the permission.",
)
MID004 = CheckSpec(
    "MID004", "MeshIdentity path template valid", _FAIL,
    "Fix `spiffeID.path`: Kong Mesh 2.12 accepts a broken path template. Allowed: `{{ .TrustDomain }}`, "
    '`{{ .Namespace }}`, `{{ .ServiceAccount }}`, `{{ label "some-key" }}`.',
)
MID005 = CheckSpec(
    "MID005", "Charts pinned to supported versions (Kong Mesh 2.12.x)", _FAIL,
    "Pin the kong-mesh chart to 2.12.x (3.x removes MeshTrafficPermission `from`, `Mesh.mtls` and "
    "`meshServices`, which the demo needs) and pin the spire and spire-crds charts.",
)
MID006 = CheckSpec(
    "MID006", "Cluster free of a previous meshid run's leftovers", _WARN,
    "Delete the listed leftovers first: an old MeshTrafficPermission or MeshIdentity can make this run "
    "pass or fail for the wrong reason.",
)
MID008 = CheckSpec(
    "MID008", "No MeshTrafficPermission already lets the demo workloads in", _WARN,
    "Delete the listed permission (kubectl delete meshtrafficpermission -n NAMESPACE NAME) or run the "
    "cleanup of the run that left it (--cleanup never keeps it): with it, the call before the permission "
    "cannot be denied, and connectivity-before-permission fails (MID060) without calling.",
)
MID007 = CheckSpec(
    "MID007", "Permission matches the demo workloads' SPIFFE ID", _WARN,
    "The allowing MeshTrafficPermission will not match, so traffic stays denied after it: use the Prefix "
    "spiffe://TRUST-DOMAIN/ns/DEMO-NAMESPACE or the exact ID, unless the denial is what you test.",
)
MID010 = CheckSpec(
    "MID010", "Kong Mesh control plane ready", _FAIL,
    "Inspect Deployment `kong-mesh-control-plane` in `kong-mesh-system` (events, logs); a cold cluster "
    "pulls many images, so allow waits of 300 s or more.",
)
MID011 = CheckSpec(
    "MID011", "Demo deployments available", _FAIL,
    "Inspect `demo-app` and `kv` in `kong-mesh-demo`; injected pods stuck in ContainerCreating mean the "
    "CSI driver `csi.spiffe.io` is missing on that node.",
)
MID014 = CheckSpec(
    "MID014", "Demo pods mount the SPIFFE CSI volume (driver registered on their nodes)", _FAIL,
    "Injected pods carry an inline `csi.spiffe.io` volume and stay in ContainerCreating (kubelet event "
    "FailedMount: driver not found in the list of registered CSI drivers) until SPIRE's CSI driver DaemonSet "
    "`RELEASE-spiffe-csi-driver` is ready on their node: check that DaemonSet's pods, events and logs.",
)
MID012 = CheckSpec(
    "MID012", "Mesh default has meshServices.mode Exclusive", _FAIL,
    "Set `spec.meshServices.mode: Exclusive` on Mesh `default`; otherwise MeshIdentity reports "
    "MeshServicesDisabled and issues no identity.",
)
MID013 = CheckSpec(
    "MID013", "Legacy MeshTrafficPermission present (demo works before MeshIdentity)", _WARN,
    "Apply the demo's MeshTrafficPermission `kv` (`from` app=demo-app) in `kong-mesh-demo`; without it "
    "a later denial cannot be told apart from a demo that never worked.",
)
MID020 = CheckSpec(
    "MID020", "SPIRE server ready", _FAIL,
    "Inspect `RELEASE-server-0` in the SPIRE namespace (it needs its `spire-data` claim bound). If `helm "
    "install spire` hung with an ImagePullBackOff hook pod, set `global.spire.tools.kubectl.tag` to an "
    "existing tag (e.g. v1.31.11).",
)
MID021 = CheckSpec(
    "MID021", "SPIRE agents and SPIFFE CSI driver ready on every node", _FAIL,
    "DaemonSets `RELEASE-agent` and `RELEASE-spiffe-csi-driver` must be ready on every node and CSIDriver "
    "`csi.spiffe.io` must exist, or injected pods stay in ContainerCreating.",
)
MID023 = CheckSpec(
    "MID023", "SPIRE's datastore claim can be provisioned (default StorageClass)", _FAIL,
    "The spire chart keeps the server's datastore on a 1Gi claim `spire-data-RELEASE-server-0` without a "
    "storageClassName, so it needs a default StorageClass: mark one default (annotation "
    "`storageclass.kubernetes.io/is-default-class: \"true\"`), or run with `--spire-persistence emptyDir` "
    "(`spire-server.persistence.type=emptyDir`: no claim, the datastore is lost whenever the server restarts).",
)
MID022 = CheckSpec(
    "MID022", "SPIRE socket injection enabled on the control plane", _FAIL,
    "Set `KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true` through the chart value "
    "`kuma.controlPlane.envVars`: `kubectl set env` is lost at the next `helm upgrade`.",
)
MID030 = CheckSpec(
    "MID030", "SPIRE registration reconciled for the demo pods", _FAIL,
    "The ClusterSPIFFEID that issues the demo's IDs (the guide's with the chart's `className`, else the "
    "chart's fallback `NAMESPACE-RELEASE-default`) must show `status.stats` with `podsSelected` > 0: check its "
    "`className`, its selectors and the spire-controller-manager logs.",
)
MID031 = CheckSpec(
    "MID031", "Guide's ClusterSPIFFEID reconciled (has a className)", _WARN,
    "SPIRE reconciles only ClusterSPIFFEIDs whose `spec.className` is the chart's class (release namespace, "
    "dash, release: `spire-spire`); the chart's fallback `spire-spire-default` issues the IDs meanwhile. "
    "Add the className to make the guide's CR count.",
)
MID032 = CheckSpec(
    "MID032", "SPIRE holds a registration entry for every demo pod", _FAIL,
    "SPIRE issues an SVID only to a pod it holds an entry for (the SPIFFE ID and the selector "
    "`k8s:pod-uid:UID`): read `kubectl exec -n NAMESPACE RELEASE-server-0 -c spire-server -- "
    "spire-server entry show`, the ClusterSPIFFEID that should select the pods (className, selectors, "
    "template) and the spire-controller-manager logs.",
)
MID040 = CheckSpec(
    "MID040", "MeshIdentity Ready=True", _FAIL,
    "Read the conditions of MeshIdentity `identity-spire`: it must be in `kong-mesh-system`, labelled "
    "`kuma.io/mesh: default`, with `provider.type: Spire` and `provider.spire`; nothing is issued until "
    "Ready=True.",
)
MID041 = CheckSpec(
    "MID041", "Mesh services enabled for MeshIdentity (not MeshServicesDisabled)", _FAIL,
    "MeshIdentity reports DependenciesReady=False, MeshServicesDisabled: set `meshServices.mode: "
    "Exclusive` on Mesh `default`.",
)
MID050 = CheckSpec(
    "MID050", "Restarted pods carry the kuma-spire-agent-socket volume", _FAIL,
    "Pods created before SPIRE injection was enabled get no identity: enable injection (MID022), then "
    "restart the demo deployments. Opt-out is the annotation `k8s.kuma.io/spire-support`, not a label.",
)
MID051 = CheckSpec(
    "MID051", "MeshService kv lists the expected SpiffeID identity", _FAIL,
    "`spec.identities` of MeshService `kv` must hold the SpiffeID of the demo's service account "
    "(`/ns/kong-mesh-demo/sa/default` under the trust domain): a missing or different value means "
    "MeshIdentity is not Ready, or its trust domain or path template differs.",
)
MID060 = CheckSpec(
    "MID060", "Traffic denied before the permission (HTTP 500 \"failed to retrieve zone\")", _FAIL,
    "A 200 here means identity is not in force: MeshIdentity not Ready, pods not restarted, or an "
    "allow-all MeshTrafficPermission exists.",
)
MID061 = CheckSpec(
    "MID061", "Traffic allowed after the permission (HTTP 200, counter, consecutive)", _FAIL,
    "Still denied: the SPIFFE ID SPIRE issues differs from the permission's prefix (trust domain, "
    "namespace or service account) or SPIRE has no entry for the pod; see MID003, MID030, MID051.",
)
MID063 = CheckSpec(
    "MID063", "Allowed traffic is mTLS (kv's inbound completed TLS handshakes)", _FAIL,
    "kv's sidecar counts no TLS handshake on its inbound listener (`listener.*_5050.ssl.handshake` on its "
    "admin port 9901), so the calls reached kv without mTLS: check the Mesh's mTLS backend, that kv's pod "
    "is injected, and its sidecar's stats (`kubectl port-forward KV-POD 9901`, then `/stats`).",
)
MID065 = CheckSpec(
    "MID065", "kv's sidecar serves a certificate for its SPIFFE ID", _FAIL,
    "kv's proxy serves no certificate carrying the SPIFFE ID Kong Mesh renders for it, so SPIRE issued none "
    "under that ID: its SVIDs carry another trust domain or path (SPIRE's `global.spire.trustDomain` against "
    "the MeshIdentity's, the ClusterSPIFFEID template against `spiffeID.path`), or SPIRE holds no entry for "
    "the pod (MID032). A mesh CA certificate (`spiffe://MESH/...`) means no Ready MeshIdentity selects it.",
)
MID064 = CheckSpec(
    "MID064", "The negative probe is denied while the demo is allowed", _FAIL,
    "A client whose SPIFFE ID the permission does not admit must be refused while demo-app is let in: if the "
    "probe got through, a MeshTrafficPermission on kv admits too much (an allow-all, a Prefix wider than the "
    "demo's namespace); if it has no SPIRE entry, its denial proves nothing (check the ClusterSPIFFEIDs and "
    "the identity_selector labels on its pod).",
)
MID062 = CheckSpec(
    "MID062", "Traffic allowed without late convergence", _WARN,
    "Allowed only after retries within the window: status ticks, SVID issuance and proxy config are slow "
    "here; check control-plane and SPIRE agent load if the delay grows.",
)
MID070 = CheckSpec(
    "MID070", "Cleanup removed everything the run created", _FAIL,
    "Delete the leftovers the message names by hand before the next run (CRDs the charts keep on uninstall "
    "and claims a StatefulSet leaves are removed only when this run created them).",
)
MID080 = CheckSpec(
    "MID080", "Rollout wave within its failure threshold", _FAIL,
    "The rollout halted: fix the failed clusters (see their failed stages) before resuming the wave.",
)
MID081 = CheckSpec(
    "MID081", "Rollback removed what the run applied", _FAIL,
    "Rollback left objects behind: delete the listed objects by hand and check `helm history` of the "
    "releases.",
)
MID082 = CheckSpec(
    "MID082", "The target's run reported its result", _FAIL,
    "The run ended without a report: its process or its worker died (Crashed, by Prefect's zombie detection "
    "when the worker went too), or it never started. Its changes are undone by `meshid recover` on the "
    "machine that ran it (the worker's runs dir); its cluster's lock frees itself when its lease expires.",
)
MID090 = CheckSpec(
    "MID090", "No unrecovered earlier run on this cluster", _WARN,
    "An earlier run on this cluster never finished and its process is gone, so what it applied may still be "
    "there: run the `meshid recover` command in the message (`meshid runs` lists every run's state).",
)
MID091 = CheckSpec(
    "MID091", "The identity switch affects only what the rollout covers", _FAIL,
    "The MeshIdentity's selector gives identity to workloads beyond meshid's own (their traffic with "
    "unselected workloads stops) or to servers whose legacy `from` permissions it would break: narrow "
    "`identity_selector` to a label only ready workloads carry, let meshid apply the `rules` equivalents "
    "plan proposes (`translate_permissions: true`), or go on knowingly (`accept_impact: true`).",
)

CATALOGUE: dict[str, CheckSpec] = {spec.code: spec for spec in list(globals().values()) if isinstance(spec, CheckSpec)}
"""Every check above, in the order they are defined (the order of `meshid check --list` and the README table)."""


def evaluates(*specs: CheckSpec) -> Callable[[E], E]:
    """Register the decorated function as the evaluator of `specs`; a code evaluated twice fails at import."""

    def register(evaluator: E) -> E:
        for spec in specs:
            found = _EVALUATORS.setdefault(spec.code, evaluator)
            if found is not evaluator:
                raise RuntimeError(f"{spec.code} is evaluated by {found.__module__}.{found.__qualname__} already, "
                                   f"not also by {evaluator.__module__}.{evaluator.__qualname__}")
        return evaluator

    return register


def result(spec: CheckSpec, ok: bool, message: str) -> CheckResult:
    """The result of check `spec` as judged; a failed result carries its hint. Outside this module only tests call it
    (the library judges through `CheckSpec.result` and `failed`)."""
    return CheckResult(
        code=spec.code,
        severity=spec.severity,
        outcome=Outcome.PASSED if ok else Outcome.FAILED,
        message=message,
        hint=None if ok else spec.hint,
    )


def doc() -> str:
    """The catalogue as a markdown table (README, `meshid check --list`)."""
    return markdown_table(
        ["code", "severity", "check", "hint"],
        [[s.code, s.severity, s.title, s.hint] for s in CATALOGUE.values()],
    )
