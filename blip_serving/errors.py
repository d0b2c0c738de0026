"""Exceptions that cross the boundary between a request and the server.

A request that is wrong gets ``InvalidInputError`` (a 400 at the client; the contract's, so that the API tier and
the stubs raise one type for one fault); anything else is a server fault (500).
"""

from blip_contract.errors import InvalidInputError

__all__ = ["ArtifactError", "InvalidInputError", "TargetUnavailableError", "TritonProcessError"]


class ArtifactError(RuntimeError):
    """A built artifact is missing, stale or does not match what the serving side expects."""


class TargetUnavailableError(RuntimeError):
    """The requested build or serve target cannot run on this machine (no CUDA, no Neuron SDK)."""


class TritonProcessError(RuntimeError):
    """The tritonserver process could not start, died, or refused a model-control call (not a request's fault)."""
