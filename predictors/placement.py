"""GPU placement policy for every task's models, in one place.

Loaders build their models on the CPU and register them here. After setup, :meth:`Placement.settle` keeps every
registered model resident on the compute device when all of them fit in ``RESIDENT_FRACTION`` of its memory (on
the CPU they trivially do); otherwise they stay on the CPU and :meth:`Placement.on_device` moves the ones a stage
needs to the GPU for that stage and back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

from predictors.runtime import log

RESIDENT_FRACTION = 0.8


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


class Placement:
    """Which device the registered models live on between runs."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resident = True
        self._owners: dict[str, list[torch.nn.Module]] = {}

    @property
    def home(self) -> torch.device:
        """Where models live between runs (where a model loaded after setup should go)."""
        return self.device if self.resident else torch.device("cpu")

    def register(self, owner: str, modules: Iterable[torch.nn.Module]) -> None:
        """Add ``owner``'s models (on the CPU); they are placed by :meth:`settle`."""
        self._owners.setdefault(owner, []).extend(modules)

    def settle(self) -> None:
        """Decide residency for everything registered, move resident models and log the decision."""
        total = sum(module_bytes(m) for modules in self._owners.values() for m in modules)
        if self.device.type == "cuda":
            self.resident = (
                total <= RESIDENT_FRACTION * torch.cuda.get_device_properties(self.device).total_memory
            )
        where = (
            f"resident on {self.device.type}" if self.resident else "on the CPU, moved to the GPU per stage"
        )
        owners = ", ".join(
            f"{owner} {sum(module_bytes(m) for m in ms) / 1e9:.2f} GB" for owner, ms in self._owners.items()
        )
        log(f"placement: {total / 1e9:.2f} GB of models ({owners or 'none'}), {where}")
        if self.resident:
            for modules in self._owners.values():
                for module in modules:
                    module.to(self.device)

    @contextmanager
    def on_device(self, modules: Sequence[torch.nn.Module]) -> Iterator[None]:
        """Run with ``modules`` on the compute device; when not resident they go back to the CPU afterwards."""
        if self.resident:
            yield
            return
        for module in modules:
            module.to(self.device)
        try:
            yield
        finally:
            for module in modules:
                module.to("cpu")
            torch.cuda.empty_cache()
