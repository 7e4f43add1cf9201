"""Admission checks with the real error texts: Kuma's validator and defaulter, and SPIRE's ClusterSPIFFEID webhook.

Each check returns an AdmissionResponse `status` (None = allowed). Kuma 2.12.3: MeshIdentity and MeshTrust only in
the system namespace (403 Forbidden, checked by the defaulter and the validator); violations are 422 Invalid with one
cause (`reason` FieldValueInvalid, `message`, `field`: metav1.StatusCause's JSON) per violation, messages joined by
"; " (pkg/plugins/runtime/k8s/webhooks/validation.go convertValidationErrorOf, pkg/core/validators/types.go). The
2.12.3 quirks are kept: a MeshIdentity's `path` template is checked by parsing the trust domain template again, so a
broken path passes; a negative `spire.agent.timeout` is reported at `spec.provider.spire.agent.spire.agent.timeout`
(validateSpire prefixes the agent's path twice, meshidentity/api/v1alpha1/validator.go).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sandbox.emulator import spiffe
from sandbox.emulator.templates import TemplateError, check

SYSTEM_NAMESPACE_ONLY = frozenset({"MeshIdentity", "MeshTrust", "HostnameGenerator", "MeshExternalService"})
MTP_TARGET_KINDS = frozenset({"Mesh", "MeshSubset", "MeshService", "MeshServiceSubset", "Dataplane"})
MTP_FROM_KINDS = frozenset({"Mesh", "MeshSubset", "MeshService", "MeshServiceSubset"})
ORIGINS = frozenset({"zone", "global"})

Violations = list[tuple[str, str]]


def errored(message: str) -> dict:
    """controller-runtime's admission.Errored(500, err): what Kuma's pod injector answers when injection fails."""
    return {"message": message, "code": 500}


def forbidden(message: str) -> dict:
    """controller-runtime's admission.Denied: 403 Forbidden."""
    return {"status": "Failure", "message": message, "reason": "Forbidden", "code": 403}


def invalid(violations: Violations, obj: Mapping) -> dict:
    """Kuma's convertValidationErrorOf: 422 Invalid with a cause per violation."""
    return {"status": "Failure", "message": "; ".join(f"{f}: {m}" for f, m in violations), "reason": "Invalid",
            "code": 422, "details": {"name": obj.get("metadata", {}).get("name", ""), "kind": obj.get("kind", ""),
                                     "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f}
                                                for f, m in violations]}}


def namespace_check(kind: str, namespace: str, system_namespace: str) -> dict | None:
    """A zone control plane accepts system-namespace-only kinds only in its own namespace."""
    if kind in SYSTEM_NAMESPACE_ONLY and namespace and namespace != system_namespace:
        return forbidden(f"resource type {kind} can be created only in the system namespace:{system_namespace}")
    return None


def _template_problem(template: str, functions: Mapping, name: str = "") -> str | None:
    try:
        check(template, functions, name)
    except TemplateError as exc:
        return str(exc)
    return None


KUMA_FUNCTIONS = {"label": str}  # the MeshIdentity validator's template functions


def _negative(duration: object) -> bool:
    """True for a Go duration string (time.ParseDuration, as metav1.Duration decodes) below zero."""
    text = str(duration or "").strip()
    return text.startswith("-") and any(ch.isdigit() and ch != "0" for ch in text)


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    """validators.MakeFieldMustBeOneOfErr's message."""
    return f"{json.dumps(value)} must be one of [{', '.join(json.dumps(a) for a in allowed)}]"


def mesh_identity(spec: Mapping) -> Violations:
    """Violations of a MeshIdentity spec (meshidentity/api/v1alpha1/validator.go of 2.12.3, quirks included)."""
    violations: Violations = []
    spiffe_id = spec.get("spiffeID") or {}
    trust_domain = spiffe_id.get("trustDomain") or ""
    problem = _template_problem(trust_domain, KUMA_FUNCTIONS) if trust_domain else None
    if problem:
        violations.append(("spec.spiffeID.trustDomain", f"couldn't parse template: {problem}"))
    if problem and spiffe_id.get("path"):  # 2.12 parses the trust domain again instead of the path
        violations.append(("spec.spiffeID.path", f"couldn't parse template: {problem}"))
    provider = spec.get("provider") or {}
    kind = provider.get("type", "")
    if kind == "Bundled":
        violations += _bundled(provider.get("bundled"))
    elif kind == "Spire":
        violations += _spire(provider.get("spire"))
    else:
        violations.append(("spec.provider.type", _one_of(kind, ("Bundled", "Spire"))))
    return violations


def _secure_data_source(source: Mapping, path: str) -> Violations:
    """datasource.go ValidateSecureDataSource."""
    kind = source.get("type", "")
    fields = {"EnvVar": ("envVar", "name"), "InsecureInline": ("insecureInline", "value"), "File": ("file", "path")}
    if kind in fields:
        field, inner = fields[kind]
        if source.get(field) is None:
            return [(f"{path}.{field}", "must be defined")]
        return [(f"{path}.{field}.{inner}", "must be defined")] if not source[field].get(inner) else []
    if kind == "Secret":
        ref = source.get("secretRef")
        if ref is None:
            return [(f"{path}.secretRef", "must be defined")]
        out = [] if ref.get("kind") == "Secret" else \
            [(f"{path}.secretRef.kind", f"{ref.get('kind', '')} must be one of: Secret")]
        return out + ([] if ref.get("name") else [(f"{path}.secretRef.name", "must be defined")])
    return [(f"{path}.type", f"{kind} must be one of: EnvVar, InsecureInline, File, Secret")]


def _bundled(bundled: Mapping | None) -> Violations:
    path = "spec.provider.bundled"
    if bundled is None:
        return [(path, "configuration needs to be defined")]
    violations: Violations = []
    creation = bundled.get("meshTrustCreation")
    if creation is not None and creation not in ("Enabled", "Disabled"):
        violations.append((f"{path}.meshTrustCreation", _one_of(creation, ("Enabled", "Disabled"))))
    ca = bundled.get("ca")
    if (bundled.get("autogenerate") or {}).get("enabled"):
        if ca is not None:
            violations.append((f"{path}.ca", "shouldn't be defined once using autogenerated"))
    elif ca is None:
        violations.append((f"{path}.ca", "must be defined"))
    else:
        for field in ("certificate", "privateKey"):
            if ca.get(field) is None:
                violations.append((f"{path}.ca.{field}", "must be defined"))
            else:
                violations += _secure_data_source(ca[field], f"{path}.ca.{field}")
    expiry = (bundled.get("certificateParameters") or {}).get("expiry")
    if expiry is not None and _negative(expiry):
        violations.append((f"{path}.certificateParameters.expiry", "must not be negative when defined"))
    return violations


def _spire(spire: Mapping | None) -> Violations:
    path = "spec.provider.spire"
    if spire is None:
        return [(path, "configuration needs to be defined")]
    timeout = (spire.get("agent") or {}).get("timeout")
    if timeout is not None and _negative(timeout):
        return [(f"{path}.agent.spire.agent.timeout", "must not be negative when defined")]
    return []


def mesh_traffic_permission(spec: Mapping) -> Violations:
    """Violations of a MeshTrafficPermission spec (validator.go of 2.12.3)."""
    violations: Violations = []
    target = spec.get("targetRef")
    if target and target.get("kind") not in MTP_TARGET_KINDS:
        violations.append(("spec.targetRef.kind", "value is not supported"))
    from_, rules = spec.get("from") or [], spec.get("rules") or []
    if from_ and rules:
        violations.append(("spec", "field 'from' must be empty when 'rules' is defined"))
    if not from_ and not rules:
        violations.append(("spec", "at least one of 'from' or 'rules' has to be defined"))
    for i, rule in enumerate(rules):
        default = rule.get("default") or {}
        if not any(default.get(k) for k in ("allow", "allowWithShadowDeny", "deny")):
            violations.append((f"spec.rules[{i}]", "at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be "
                                                   "defined"))
        for field in ("allow", "allowWithShadowDeny", "deny"):
            for j, match in enumerate(default.get(field) or []):
                if "spiffeID" in match and not spiffe.is_valid_id(match["spiffeID"].get("value", "")):
                    violations.append((f"spec.rules[{i}].{field}[{j}].spiffeID", "must be a valid Spiffe ID"))
    for i, entry in enumerate(from_):
        if (entry.get("targetRef") or {}).get("kind") not in MTP_FROM_KINDS:
            violations.append((f"spec.from[{i}].targetRef.kind", "value is not supported"))
        if not (entry.get("default") or {}).get("action"):
            violations.append((f"spec.from[{i}].default.action", "must be defined"))
    return violations


def labels(meta: Mapping) -> Violations:
    """The validator's label checks (webhooks/validation.go validateLabels): kuma.io/origin must be zone or global,
    reported at `labels["kuma.io/origin"]` with api/mesh/v1alpha1/dataplane_helpers.go IsValid's message."""
    origin = (meta.get("labels") or {}).get("kuma.io/origin")
    if origin is not None and origin not in ORIGINS:
        return [('labels["kuma.io/origin"]', f'unknown resource origin "{origin}"')]
    return []


SPEC_VALIDATORS = {"MeshIdentity": mesh_identity, "MeshTrafficPermission": mesh_traffic_permission}


def kuma_resource(obj: Mapping, operation: str, system_namespace: str) -> dict | None:
    """Kuma's validating webhook for one kuma.io object."""
    meta = obj.get("metadata", {})
    if denied := namespace_check(obj.get("kind", ""), meta.get("namespace", ""), system_namespace):
        return denied
    if operation == "DELETE":
        return None
    violations = labels(meta)
    if not violations and obj.get("kind") in SPEC_VALIDATORS:
        violations = SPEC_VALIDATORS[obj["kind"]](obj.get("spec") or {})
    return invalid(violations, obj) if violations else None


def cluster_spiffe_id(spec: Mapping) -> dict | None:
    """spire-controller-manager's ParseClusterSPIFFEIDSpec (api/v1alpha1/clusterspiffeid_webhook.go), as its webhook
    reports it: Go templates with no extra functions, named spiffeIDTemplate, dnsNameTemplate, workloadSelectorTemplate."""
    template = spec.get("spiffeIDTemplate", "")
    if not template:
        return forbidden("empty SPIFFEID template")
    if problem := _template_problem(template, {}, "spiffeIDTemplate"):
        return forbidden(f"invalid SPIFFEID template: {problem}")
    for value in spec.get("federatesWith") or []:
        if not spiffe.is_valid_trust_domain(value):
            return forbidden(f"invalid federatesWith value: trust domain characters are limited to lowercase letters, "
                             f"numbers, dots, dashes, and underscores: {value}")
    for field, name, label in (("dnsNameTemplates", "dnsNameTemplate", "dnsNameTemplate"),
                               ("workloadSelectorTemplates", "workloadSelectorTemplate", "workloadSelectorTemplates")):
        for value in spec.get(field) or []:
            if problem := _template_problem(value, {}, name):
                return forbidden(f"invalid {label} value: {problem}")
    return None
