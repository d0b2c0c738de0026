"""The host catalog's records (``hosts.toml``): host types and the model's figures, validated whole.

Below the layouts and targets, which read a ``HostType`` to place themselves; ``blip_serving.placement`` reads the
file (``load_catalog``) and writes the plan.
"""

from __future__ import annotations

from pydantic import Field

from blip_contract.records import NonNegativeNumber, PositiveInteger, PositiveNumber, Strict


class HostType(Strict):
    """One ``[hosts."<type>"]`` of the catalog: what AWS publishes of an instance type, with its source."""

    family: str = Field(description="The target that serves on this host (cpu, gpu, neuron).")
    neuron_cores: PositiveInteger | None = Field(None, description="NeuronCores, where the host has Inferentia.")
    gpus: PositiveInteger | None = Field(None, description="GPUs, where the host has them.")
    accelerator_memory_gib: NonNegativeNumber = Field(0, description="Accelerator memory of the whole host.")
    vcpus: PositiveInteger
    memory_gib: PositiveNumber
    source: str = Field(min_length=1, description="Where the figures come from.")

    @property
    def accelerators(self) -> str:
        if self.neuron_cores:
            return f"{self.neuron_cores} NeuronCores"
        return f"{self.gpus} GPU(s)" if self.gpus else "0 accelerators"


class ModelFigures(Strict):
    """``[model]``: what the plan assumes of blip-vqa-base, each figure with where it comes from (comments)."""

    weights_mib: dict[str, PositiveNumber]
    shapes: dict[str, PositiveInteger]
    gmacs_per_frame: dict[str, PositiveNumber]
    stub_overhead_mib: NonNegativeNumber
    runtime_overhead_mib: dict[str, NonNegativeNumber]


class CatalogInfo(Strict):
    retrieved: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="When the figures were read from their sources.")


class Catalog(Strict):
    """``hosts.toml`` whole: the host types a fleet can run on, and the model's figures."""

    catalog: CatalogInfo
    hosts: dict[str, HostType]
    model: ModelFigures
