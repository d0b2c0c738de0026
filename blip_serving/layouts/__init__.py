"""The registry of layouts: ``LAYOUT=...`` to the module that lays the repository out that way."""

from __future__ import annotations

from blip_serving.deployment import DEFAULT_LAYOUT, Deployment
from blip_serving.layouts.base import ConfigBuilder, Context, Layout, Option, balanced_instances
from blip_serving.layouts.colocated import ColocatedLayout
from blip_serving.layouts.ensemble import EnsembleLayout

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (EnsembleLayout(), ColocatedLayout())}
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)
if DEFAULT_LAYOUT not in LAYOUTS:
    raise ImportError(f"the deployment record's default layout {DEFAULT_LAYOUT!r} is not registered")

__all__ = [
    "DEFAULT_LAYOUT",
    "LAYOUTS",
    "LAYOUT_NAMES",
    "ConfigBuilder",
    "Context",
    "Layout",
    "Option",
    "balanced_instances",
    "get_layout",
    "layout_of",
    "layout_serving",
]


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown LAYOUT={name!r}; expected one of {', '.join(LAYOUT_NAMES)}") from None


def layout_of(deployment: Deployment) -> Layout:
    """The deployment's layout, after checking that the deployment fits it; ``ValueError`` in one line."""
    layout = get_layout(deployment.layout)
    layout.check(deployment)
    return layout


def layout_serving(models: set[str]) -> Layout:
    """The layout whose served models are exactly ``models`` (a running fleet's ready models): how a measurement of
    a deployed fleet learns its layout from the fleet itself. ``ValueError`` in one line when none is."""
    for layout in LAYOUTS.values():
        if set(layout.served_models) == models:
            return layout
    known = "; ".join(f"{name}: {', '.join(sorted(lay.served_models))}" for name, lay in LAYOUTS.items())
    raise ValueError(f"the fleet serves {', '.join(sorted(models)) or 'no model'}, which is no layout's set ({known})")
