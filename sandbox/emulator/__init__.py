"""The emulated Kong Mesh + SPIRE world of a sandbox.

Kong Mesh, SPIRE and Envoy cannot run in the sandbox, so this package plays them as seen through the Kubernetes API
(admission webhooks, status writers, the part of a kubelet kwok lacks, a volume provisioner), through `kubectl exec`
(SPIRE's CLI) and through HTTP (one demo-app server per demo pod and one Envoy admin API per injected pod, reached
with kwok port-forwards). Run it as `python -m sandbox.emulator --state-dir DIR`. meshid never imports it.
"""
