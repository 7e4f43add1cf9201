"""The emulated Kong Mesh + SPIRE world of a sandbox.

Kong Mesh, SPIRE and Envoy cannot run in the sandbox, so this package plays them as seen through the Kubernetes API
(admission webhooks, status writers, hook Jobs) and through the demo app's HTTP API (one server per demo pod, reached
with kwok port-forwards). Run it as `python -m sandbox.emulator --state-dir DIR`. meshid never imports it.
"""
