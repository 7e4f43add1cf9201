"""Run parameters (pydantic): target, charts, namespaces, permission, registration, cleanup, timeouts.

Defaults reproduce the guide. The models become Prefect UI forms, so every field has a description.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meshid.errors import InputError, checked, input_error, pydantic_error
from meshid.identity import spiffe_id_matches
from meshid.spire import SpireRelease
from meshid.spiffe import (
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_TRUST_DOMAIN,
    lint_path_template,
    parse_spiffe_id,
    render_path,
    spire_template_id,
    validate_spiffe_id,
    validate_trust_domain,
)

DEMO_SERVICE_ACCOUNT = "default"  # the demo Deployments set no serviceAccountName
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HTTP_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
_IMAGE_TAG = re.compile(r"\w[\w.-]{0,127}")
_KONG_MESH_VERSION = re.compile(r"2\.12\.\d+([-+][0-9A-Za-z.-]+)?")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise pydantic_error(
            f"{value!r} is not a DNS-1123 label",
            "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
        )
    return value


def _http_url(value: str) -> str:
    if not _HTTP_URL.fullmatch(value):
        raise pydantic_error(f"{value!r} is not an http(s) URL", "give a chart repository URL like https://host/path")
    return value


def _image_tag(value: str) -> str:
    if not _IMAGE_TAG.fullmatch(value):
        raise pydantic_error(f"{value!r} is not a container image tag", "give a tag such as v1.31.11")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ImageTag = Annotated[str, AfterValidator(_image_tag)]
TrustDomain = Annotated[str, checked(validate_trust_domain)]
SpiffeId = Annotated[str, checked(validate_spiffe_id)]
PathTemplate = Annotated[str, checked(lint_path_template)]


class _Model(BaseModel):
    """Parameters reject unknown fields, so a typo in a fleet file or form is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class ProviderName(StrEnum):
    """Where the cluster comes from."""

    SANDBOX = "sandbox"
    MINIKUBE = "minikube"
    KIND = "kind"
    CONTEXT = "context"


class Target(_Model):
    """The cluster a run works on."""

    name: DnsLabel = Field("mesh-zone", description="Name of the target, a DNS-1123 label (the guide's profile).")
    provider: ProviderName = Field(ProviderName.SANDBOX, description="Where the cluster comes from.")
    cluster: str | None = Field(
        None, description="Sandbox name, minikube profile or kind cluster name; defaults to the target name."
    )
    kubeconfig: Path | None = Field(None, description="Kubeconfig file (provider 'context').")
    kubeconfig_secret_block: str | None = Field(
        None, description="Name of a Prefect Secret block holding a kubeconfig (provider 'context')."
    )
    context: str | None = Field(None, description="Kubeconfig context to use; defaults to the current context.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels, e.g. for fleet waves.")

    @model_validator(mode="after")
    def _kubeconfig_source(self) -> Target:
        if self.kubeconfig and self.kubeconfig_secret_block:
            raise pydantic_error(
                "kubeconfig and kubeconfig_secret_block are mutually exclusive",
                "give only one of them", "kubeconfig_secret_block",
            )
        if self.provider is ProviderName.CONTEXT and not (self.kubeconfig or self.kubeconfig_secret_block):
            raise pydantic_error(
                "provider 'context' needs a kubeconfig",
                "set kubeconfig to a file or kubeconfig_secret_block to a Prefect Secret block name", "kubeconfig",
            )
        return self

    @property
    def resolved_cluster(self) -> str:
        """The cluster (profile) name: `cluster`, or the target name."""
        return self.cluster or self.name


class ChartSource(_Model):
    """Where a Helm chart comes from."""

    repo: HttpUrl = Field(description="Chart repository URL (helm --repo).")
    chart: str = Field(min_length=1, description="Chart name in the repository.")
    version: str = Field(min_length=1, description="Chart version (pinned: the guide installs unpinned charts).")


_SPIFFE_CHARTS = "https://spiffe.github.io/helm-charts-hardened/"


class Charts(_Model):
    """The three charts the guide installs, pinned, and an optional mirror."""

    kong_mesh: ChartSource = Field(
        default_factory=lambda: ChartSource(
            repo="https://kong.github.io/kong-mesh-charts", chart="kong-mesh", version="2.12.3"
        ),
        description="Kong Mesh chart; must be 2.12.x.",
    )
    spire_crds: ChartSource = Field(
        default_factory=lambda: ChartSource(repo=_SPIFFE_CHARTS, chart="spire-crds", version="0.6.0"),
        description="SPIRE CRDs chart.",
    )
    spire: ChartSource = Field(
        default_factory=lambda: ChartSource(repo=_SPIFFE_CHARTS, chart="spire", version="0.30.0"),
        description="SPIRE chart.",
    )
    mirror: HttpUrl | None = Field(
        None, description="Chart repository URL that replaces every repo above (air-gapped clusters)."
    )
    kubectl_hook_tag: ImageTag = Field(
        "v1.31.11", description="global.spire.tools.kubectl.tag: without it the SPIRE install hook can hang ~5 min."
    )

    @field_validator("kong_mesh")
    @classmethod
    def _kong_mesh_212(cls, source: ChartSource) -> ChartSource:
        if not _KONG_MESH_VERSION.fullmatch(source.version):
            raise pydantic_error(
                f"Kong Mesh chart version {source.version!r} is not 2.12.x",
                "pin a 2.12.x version such as 2.12.3: 2.14 changes the legacy-MTP fallback the guide's denied call "
                "relies on, and 3.x removes the demo's legacy pieces (MTP 'from', Mesh mtls, meshServices)",
                "version",
            )
        return source


class Namespaces(_Model):
    """Namespaces and the SPIRE release name the guide uses."""

    control_plane: DnsLabel = Field("kong-mesh-system", description="Kong Mesh control plane namespace.")
    demo: DnsLabel = Field("kong-mesh-demo", description="Demo application namespace.")
    spire: DnsLabel = Field("spire", description="SPIRE namespace (the spire chart's release namespace).")
    spire_release: DnsLabel = Field("spire", description="Helm release name of the SPIRE chart; SPIRE's workloads, "
                                    "controller class and webhook are named after it as the chart names them.")
    probe: DnsLabel = Field("meshid-probe", description="Namespace of the negative probe: a client whose SPIFFE ID "
                            "the permission does not admit, which must be denied while the demo is allowed.")


class PermissionMatch(_Model):
    """The SPIFFE ID match of the MeshTrafficPermission that allows the demo traffic."""

    type: Literal["Prefix", "Exact"] = Field("Prefix", description="Prefix is a plain string prefix match.")
    value: SpiffeId | None = Field(None, description="SPIFFE ID to match; defaults to spiffe://<td>/ns/<demo ns>.")

    def resolved_value(self, trust_domain: str, demo_ns: str) -> str:
        """`value`, or the guide's prefix for the demo namespace."""
        return self.value or f"spiffe://{trust_domain}/ns/{demo_ns}"


class RegistrationClass(StrEnum):
    """How the guide's ClusterSPIFFEID is applied."""

    AS_GUIDE = "as-guide"  # no className: SPIRE ignores it, the chart's fallback CR issues the IDs
    CHART_CLASS = "chart-class"  # className "<spire ns>-<spire release>": the guide's CR takes effect


class RunMode(StrEnum):
    """In which order a run changes its cluster."""

    VALIDATE = "validate"  # the guide's order: identity first, the denial before the permission is checked
    ROLLOUT = "rollout"  # production: permissions first, no denial window, the negative probe proves enforcement


_KUMA_LABEL = re.compile(r"(k8s\.)?kuma\.io/.*")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _selector(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise pydantic_error(f"{key}={value!r} is not a Kubernetes label", "use label keys and values as "
                                 "`kubectl label` accepts them", key)
        if _KUMA_LABEL.fullmatch(key):
            raise pydantic_error(f"{key} is a label Kong Mesh sets itself", "select by a label of your own: meshid "
                                 "puts the selector's labels on its demo and probe pods, and your workloads opt in by "
                                 "carrying it", key)
    return labels


class CleanupPolicy(StrEnum):
    """When to delete what the run created."""

    ALWAYS = "always"
    ON_SUCCESS = "on-success"
    NEVER = "never"


class Timeouts(_Model):
    """Timeouts in seconds."""

    apply_s: float = Field(30.0, gt=0, description="One server-side apply.")
    wait_s: float = Field(300.0, gt=0, description="One wait for a condition (the guide's 90 s is too short cold).")
    helm_s: float = Field(600.0, gt=0, description="One helm install or upgrade.")
    http_s: float = Field(10.0, gt=0, description="One HTTP request.")
    connectivity_s: float = Field(120.0, gt=0, description="Convergence of the allowed/denied calls.")
    cleanup_s: float = Field(300.0, gt=0, description="Cleanup of one run.")


class GuideParams(_Model):
    """Everything one run of the guide needs; the defaults reproduce the guide."""

    target: Target = Field(default_factory=Target, description="The cluster.")
    trust_domain: TrustDomain = Field(DEFAULT_TRUST_DOMAIN, description="MeshIdentity trust domain.")
    identity_path: PathTemplate = Field(DEFAULT_PATH_TEMPLATE, description="MeshIdentity spiffeID.path template.")
    charts: Charts = Field(default_factory=Charts, description="Charts and versions.")
    namespaces: Namespaces = Field(default_factory=Namespaces, description="Namespaces and release names.")
    permission: PermissionMatch = Field(default_factory=PermissionMatch, description="The allowing MTP match.")
    registration: RegistrationClass = Field(
        RegistrationClass.AS_GUIDE,
        description="as-guide: the guide's ClusterSPIFFEID without className (SPIRE ignores it; the chart's fallback "
        "CR issues the IDs). chart-class: className <spire ns>-<spire release>, so the guide's CR takes effect.",
    )
    cleanup: CleanupPolicy = Field(CleanupPolicy.ALWAYS, description="When to delete what the run created.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Timeouts in seconds.")
    stable_successes: int = Field(5, ge=1, le=50, description="Consecutive allowed calls required to pass.")
    mesh_services_mode: Literal["Exclusive", "Everywhere", "ReachableBackends", "Disabled"] = Field(
        "Exclusive", description="The demo Mesh's meshServices.mode; MeshIdentity needs Exclusive (other values "
        "model a misconfigured Mesh).",
    )
    spire_trust_domain: TrustDomain | None = Field(
        None, description="SPIRE's trust domain; defaults to trust_domain (set it to model a mismatched install)."
    )
    spire_persistence: Literal["pvc", "emptyDir"] = Field(
        "pvc", description="spire-server.persistence.type: pvc (the chart's default: a 1Gi claim, which needs a "
        "default StorageClass) or emptyDir (no claim; SPIRE's datastore is lost whenever the server restarts).",
    )
    mode: RunMode = Field(RunMode.VALIDATE, description="validate: the guide's order, identity before the permission "
                          "(traffic is denied in between: throwaway and test clusters). rollout: production order, "
                          "the permissions first, no denial window, enforcement proven by the negative probe; "
                          "re-runs converge and change nothing when all is in place.")
    identity_selector: Annotated[dict[str, str], AfterValidator(_selector)] = Field(
        default_factory=dict, description="The MeshIdentity's selector.dataplane.matchLabels: {} (the guide's) gives "
        "every data plane of the mesh its SPIRE identity; a label (e.g. {mesh-identity: spire}) rolls identity out to "
        "the workloads carrying it first. meshid puts these labels on its demo and probe pods.")
    accept_impact: bool = Field(False, description="Rollout: go on although the identity switch affects workloads "
                                "beyond meshid's own (plan and preflight list them); without it such a cluster halts.")
    translate_permissions: bool = Field(False, description="Rollout: for each legacy `from` MeshTrafficPermission the "
                                        "switch would break, apply the equivalent `rules` permission plan proposes "
                                        "(before anything switches); without it such a cluster halts.")
    keep_probe: bool = Field(False, description="Keep the negative probe's namespace and workload after the run.")

    @model_validator(mode="after")
    def _rollout_on_existing_clusters(self) -> GuideParams:
        if self.mode is RunMode.ROLLOUT and self.target.provider is not ProviderName.CONTEXT:
            raise pydantic_error(f"a rollout configures an existing cluster, not a {self.target.provider.value} one "
                                 "it would start", "use provider context with a kubeconfig, or mode validate", "mode")
        if self.mode is RunMode.ROLLOUT and "cleanup" not in self.model_fields_set:
            self.cleanup = CleanupPolicy.NEVER  # what a rollout is for: its changes stay
        elif self.mode is RunMode.ROLLOUT and self.cleanup is not CleanupPolicy.NEVER:
            raise pydantic_error(f"a rollout keeps its changes, but cleanup is {self.cleanup.value}",
                                 "leave cleanup out (a rollout never cleans up; a failed one is rolled back), or "
                                 "use mode validate", "cleanup")
        if self.namespaces.probe in (self.namespaces.demo, self.namespaces.control_plane, self.namespaces.spire):
            raise pydantic_error(f"the probe's namespace {self.namespaces.probe} is also the demo's, the control "
                                 "plane's or SPIRE's", "give the negative probe a namespace of its own",
                                 "namespaces.probe")
        return self

    @property
    def spire(self) -> SpireRelease:
        """The SPIRE release the run installs or checks, with the names the chart derives from it."""
        return SpireRelease(self.namespaces.spire, self.namespaces.spire_release)

    @property
    def resolved_spire_trust_domain(self) -> str:
        """SPIRE's trust domain: `spire_trust_domain`, or `trust_domain`."""
        return self.spire_trust_domain or self.trust_domain

    def workload_id(self) -> str:
        """The SPIFFE ID the MeshIdentity gives the demo workloads; InputError when the path needs pod labels."""
        return self.spiffe_id(self.namespaces.demo)

    def spiffe_id(self, namespace: str, service_account: str = DEMO_SERVICE_ACCOUNT) -> str:
        """The SPIFFE ID the MeshIdentity gives a workload of `namespace` running as `service_account`."""
        td = self.trust_domain
        return f"spiffe://{td}{render_path(self.identity_path, namespace, service_account, td)}"

    def permission_gap(self) -> str | None:
        """Preflight warning: the permission does not match the demo workloads' SPIFFE ID (traffic stays denied)."""
        value = self.permission.resolved_value(self.trust_domain, self.namespaces.demo)
        try:
            workload_id = self.workload_id()
        except InputError:  # a label-based path: consistency_problems reports it
            return None
        matches = spiffe_id_matches({"type": self.permission.type, "value": value}, workload_id)
        return None if matches else (f"permission {self.permission.type} {value} does not match the demo "
                                     f"workloads' {workload_id}: the allowed call would stay denied")

    def consistency_problems(self) -> list[str]:
        """Preflight: combinations of valid parameters that cannot give the guide's result."""
        td, spire_td, ns = self.trust_domain, self.resolved_spire_trust_domain, self.namespaces.demo
        problems = []
        if spire_td != td:
            problems.append(
                f"spire_trust_domain {spire_td} differs from trust_domain {td}: SPIRE issues SVIDs that do not "
                "match the MeshIdentity's SPIFFE IDs, so workloads get no certificates and no traffic"
            )
        spire_id = spire_template_id(td, ns, DEMO_SERVICE_ACCOUNT)
        try:
            workload_id = self.workload_id()
        except InputError as exc:  # the template passed lint, so only a `label` can fail to render
            workload_id = None
            problems.append(
                f"identity_path depends on pod labels ({exc.problem}) but the ClusterSPIFFEID template gives "
                f"{spire_id} from namespace and service account only: the SVIDs would not match"
            )
        if workload_id and workload_id != spire_id:
            problems.append(
                f"identity_path gives the demo workloads {workload_id} but the ClusterSPIFFEID template gives "
                f"{spire_id}: the SVIDs would not match, so no certificates and no traffic"
            )
        value = self.permission.resolved_value(td, ns)
        value_td, _ = parse_spiffe_id(value, "permission.value")
        if value_td != td:
            problems.append(f"permission.value {value} is in trust domain {value_td}, not {td}: it allows nothing")
        gap = self.permission_gap() if self.mode is RunMode.ROLLOUT else None
        if gap:
            problems.append(f"{gap}: a rollout would deny the demo's traffic once identity switches")
        return problems


def parse_params(data: dict[str, Any]) -> GuideParams:
    """Validate run parameters; raise one InputError naming the dotted field path (e.g. "permission.value")."""
    try:
        return GuideParams.model_validate(data)
    except ValidationError as exc:
        raise input_error(exc) from None
