"""The local sandbox: a real Kubernetes control plane with kwok nodes, a chart repository and an emulated mesh.

meshid starts and stops sandboxes only through `sandbox.lifecycle`; the emulated mesh (`sandbox.emulator`) is the
world meshid observes and is never imported by it.
"""
