"""Fabric's module wrapper for a run of one process, without its per-call bookkeeping.

`Fabric.setup` wraps a module so that its forward pass runs at the run's precision (the inputs
and outputs converted, the pass under the precision's autocast) and, on every output that needs
a gradient, registers a hook that checks, during the backward pass, that the backward pass went
through `Fabric.backward`. sylvan's code always does, and the check costs a hook registered per
forward pass and a call into Python per backward pass: for an agent's small networks, which run
a forward pass at every environment step, about a tenth of the plain loop's whole step. In one
process the engine's modules keep the conversions and the autocast and leave the check out (the
engine's own supervised loop calls its learner the same way); with several workers they stay
Fabric's, whose forward DDP needs."""

from __future__ import annotations

from typing import Any

from sylvan.parallel.fabric_package import fabric

_FabricModule = fabric().wrappers._FabricModule


class OneProcessModule(_FabricModule):
    """`_FabricModule` whose forward pass leaves out the backward-pass check."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        precision = self._strategy.precision
        args, kwargs = precision.convert_input((args, kwargs))
        with precision.forward_context():
            output = self._forward_module(*args, **kwargs)
        return precision.convert_output(output)


def lighten(wrapped: Any) -> Any:
    """`wrapped` (a module as `Fabric.setup` returns it, one process) as a `OneProcessModule`."""
    if type(wrapped) is _FabricModule:  # past the wrapper's __setattr__, which would pass it to the module too
        object.__setattr__(wrapped, "__class__", OneProcessModule)
    return wrapped
