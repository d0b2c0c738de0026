"""The registry of layouts: ``LAYOUT=...`` to the module that lays the repository out that way."""

from __future__ import annotations

from blip_serving.deploy.layouts.base import Layout
from blip_serving.deploy.layouts.colocated import ColocatedLayout
from blip_serving.deploy.layouts.ensemble import EnsembleLayout

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (EnsembleLayout(), ColocatedLayout())}
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)
DEFAULT_LAYOUT = EnsembleLayout.name

__all__ = ["DEFAULT_LAYOUT", "LAYOUTS", "LAYOUT_NAMES", "Layout", "get_layout"]


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown LAYOUT={name!r}; expected one of {', '.join(LAYOUT_NAMES)}") from None
