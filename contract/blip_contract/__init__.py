"""The ``blip_vqa`` wire contract: what a caller sends and gets back, and nothing of how it is served.

The client, the router and the API tier import this module and tritonclient only; the serving side builds its
configs from the same names. It imports neither torch nor transformers (a test proves it), so the API tier's
image carries no model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

# The model every fleet serves, whatever its target (cpu, gpu, neuron) or layout.
PUBLIC_MODEL = "blip_vqa"

# One frame a request, in a batch dimension of 1 that every tensor leads with (the server batches concurrent
# requests itself, up to its max_batch_size of frames per execute):
# Inputs: one encoded image (JPEG, PNG, WebP, ...), IMAGE [1, 1], and 1..N UTF-8 questions about it, QUESTIONS [1, N].
IMAGE = "IMAGE"
QUESTIONS = "QUESTIONS"
# Outputs, [1, N], one per question in order: the generated answer, and P(yes) against no from the first decoder step.
ANSWERS = "ANSWERS"
SCORES = "SCORES"

# Request parameter (JSON boolean): true runs the decoder's first step only; the response has SCORES alone.
SCORES_ONLY = "scores_only"

# Serving limits a caller can rely on unless a deployment lowers them.
DEFAULT_MAX_QUESTIONS = 16
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: Triton dtype name and dims, ``-1`` where the size varies; ``axes`` names each ``-1``.
    ``optional``: a Python-backend model's input that a request may leave out (one of two forms of one thing)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    axes: tuple[str | None, ...] = ()
    optional: bool = False

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The concrete shape for the given axis sizes."""
        axes = self.axes or (None,) * len(self.dims)
        return tuple(sizes[axis] if dim == -1 and axis else dim for dim, axis in zip(self.dims, axes))

    @property
    def triton_dtype(self) -> str:
        """The ``TYPE_*`` name config.pbtxt uses (BYTES is TYPE_STRING there)."""
        return "TYPE_STRING" if self.dtype == "BYTES" else f"TYPE_{self.dtype}"


# The dims below leave the batch dimension out, as config.pbtxt writes them.
PUBLIC_INPUTS: tuple[TensorSpec, ...] = (TensorSpec(IMAGE, "BYTES", (1,)), TensorSpec(QUESTIONS, "BYTES", (-1,)))
PUBLIC_OUTPUTS: tuple[TensorSpec, ...] = (TensorSpec(ANSWERS, "BYTES", (-1,)), TensorSpec(SCORES, "FP32", (-1,)))


def request_shape(tensor: TensorSpec, count: int = 1) -> list[int]:
    """The shape a request sends or gets for ``tensor``: the batch of one frame, then its dims (``count`` where a
    dim varies: the number of questions)."""
    return [1, *(count if dim == -1 else dim for dim in tensor.dims)]


def reaches(score: float, threshold: float) -> bool:
    """The one rule by which a score meets a threshold: equal counts. The per-frame ``alert`` and the behaviour
    events' enter threshold both use it; their exit is its negation (a score below the exit threshold)."""
    return score >= threshold
