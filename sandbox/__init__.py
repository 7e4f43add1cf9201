"""The local sandbox: a real Kubernetes control plane with kwok nodes, a chart repository and an emulated mesh.

meshid drives sandboxes from its sandbox provider alone (`meshid/providers/sandbox.py`, through `sandbox.lifecycle`);
the emulated mesh (`sandbox.emulator`) is the world meshid observes and is never imported by it. The world never calls
meshid: nothing here imports it or runs the `meshid` command.
"""
