"""Build time: load a BLIP VQA checkpoint, trace its three components for a target, verify, write the manifest.

``from blip_build import build``; ``python -m blip_build`` is its command line.
"""

from blip_build.pipeline import build

__all__ = ["build"]
