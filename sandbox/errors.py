"""Errors a sandbox operation raises: each says what went wrong and how to fix it."""


class SandboxError(Exception):
    """Base of every sandbox error; `str()` is the message a person reads."""


class InvalidName(SandboxError):
    """The sandbox name is not a DNS-1123 label."""


class UnknownSandbox(SandboxError):
    """No sandbox of that name exists."""


class SandboxExists(SandboxError):
    """A sandbox of that name is already up."""


class ToolchainMissing(SandboxError):
    """The binaries are missing and cannot be built (no Go toolchain), kubectl is missing, or the `sandbox` extra
    (the emulator's Python packages) is not installed."""


class PortInUse(SandboxError):
    """A requested port on 127.0.0.1 is taken."""


class StartFailed(SandboxError):
    """A component did not start in time; the message names it and where its log is."""


class Stopped(SandboxError):
    """A start was stopped on request (its `stop` turned true); nothing of it is left."""
