"""HAT's network: a backbone whose layers' units are gated by task embeddings, and the choice of
the layers gated."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.parts.layer_calls import layer_calls

Layer = nn.Linear | nn.Conv2d


def gated_layers(model: nn.Module, input_shape: tuple[int, ...], backbone: str) -> tuple[list[str], str]:
    """The names of the layers HAT gates, in forward order, and of the output layer (the last
    `nn.Linear` or `nn.Conv2d` a forward pass reaches). A `ConfigurationError` for a network HAT
    cannot protect: batch norm, parameters outside those layers, a layer called twice, a grouped
    convolution, a layer that does not read the units of the one before it."""
    def refuse(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"hat gates the units of a chain of Linear and Conv2d layers (mlp, mlp_400 and cnn are), and {backbone} "
            f"{why}"
        )

    norms = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        raise refuse(f"has batch norm ({norms[0]}), whose statistics and shift would move under the old tasks' units")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    names = layer_calls(model, layers, input_shape)
    if len(names) < 2:
        raise refuse("has no layer before its output layer")
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise refuse(f"calls {repeated} more than once in a forward pass")
    calls = [(name, layers[name]) for name in names]
    owned = {f"{name}.{p}" for name, layer in calls for p, _ in layer.named_parameters()}
    loose = [name for name, _ in model.named_parameters() if name not in owned]
    if loose:
        raise refuse(f"has parameters outside those layers ({loose[0]}), which no gate would protect")
    for (_, before), (name, layer) in zip(calls, calls[1:]):
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise refuse(f"has a grouped convolution ({name})")
        if isinstance(layer, nn.Conv2d):
            reads = isinstance(before, nn.Conv2d) and layer.in_channels == before.out_channels
        elif isinstance(before, nn.Conv2d):
            reads = layer.in_features % before.out_channels == 0
        else:
            reads = layer.in_features == before.out_features
        if not reads:
            raise refuse(f"has {name}, which does not read the units of the layer before it")
    return names[:-1], names[-1]


def units(layer: Layer) -> int:
    """The units HAT gates in `layer`: its output features or channels."""
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


EMBEDDING_LIMIT = 6.0  # the embeddings are clamped to [-6, 6] after every step (the authors' thres_emb)
COSH_LIMIT = 50.0  # s e is clamped to [-50, 50] inside the compensation's cosh (the authors' thres_cosh)


class GatedNetwork(nn.Module):
    """A backbone whose gated layers' outputs are multiplied, sample by sample, by the gates of
    the sample's task: sigmoid(scale x embedding). `cumulative_<i>` holds layer i's cumulative
    gates A (a buffer: saved with the weights, moved with them)."""

    def __init__(self, backbone: nn.Module, layers: list[str], nb_tasks: int) -> None:
        super().__init__()
        self.backbone = backbone
        modules = dict(backbone.named_modules())
        self.layers = [modules[name] for name in layers]
        self.embeddings = nn.ParameterList(nn.Parameter(torch.randn(nb_tasks, units(m))) for m in self.layers)
        for index, layer in enumerate(self.layers):
            self.register_buffer(f"cumulative_{index}", torch.zeros(units(layer)))
            layer.register_forward_hook(self._gate_hook(index))
        self._gates: list[torch.Tensor] | None = None

    def _gate_hook(self, index: int) -> Any:
        def gate(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            gates = self._gates[index]
            return output * gates.to(output.dtype).view(*gates.shape, *([1] * (output.dim() - 2)))
        return gate

    def cumulative(self) -> list[torch.Tensor]:
        return [getattr(self, f"cumulative_{index}") for index in range(len(self.layers))]

    def checked_task_labels(self, task_labels: torch.Tensor | None) -> torch.Tensor | None:
        """`task_labels`, where each has gates; a label beyond the setting's tasks is refused by
        name, not an IndexError of the embedding table. A host sync: for labels from outside the run."""
        if task_labels is None or not len(task_labels):
            return task_labels
        tasks = len(self.embeddings[0])
        outside = task_labels[(task_labels < 0) | (task_labels >= tasks)]
        if len(outside):
            raise ValueError(f"hat has gates for {tasks} tasks (task labels 0 to {tasks - 1}); got task label "
                             f"{int(outside[0])}")
        return task_labels

    def gates(self, task_labels: torch.Tensor, scale: float) -> list[torch.Tensor]:
        """Each gated layer's gates for `task_labels` (one row per label) at `scale`."""
        return [torch.sigmoid(scale * embedding[task_labels]) for embedding in self.embeddings]

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        if task_labels is None:
            raise ValueError("hat needs the task label of every sample, to choose its gates")
        self._gates = self.gates(task_labels.to(x.device), scale)
        try:
            return self.backbone(x)
        finally:
            self._gates = None

    def attention_penalty(self, tasks: torch.Tensor, scale: float) -> torch.Tensor:
        """The mean over `tasks` of the share of the free units (1 - A) their gates at `scale`
        take: sum a (1 - A) / sum (1 - A) over every gated layer's units."""
        network = self
        free = [1 - cumulative for cumulative in network.cumulative()]
        gates = network.gates(tasks.to(free[0].device), scale)
        taken = sum((g * f).sum(1) for g, f in zip(gates, free))
        room = sum(f.sum() for f in free)
        return (taken / room.clamp_min(torch.finfo(room.dtype).tiny)).mean()

    def gradient_factors(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """What each gated layer's gradients are multiplied by in this stage: for a weight from
        unit j of the layer before to unit i, 1 - min(A_i, A_j); for a bias, 1 - A_i. None
        while nothing is used (the first stage)."""
        network = self
        cumulative = network.cumulative()
        if not any(bool(c.any()) for c in cumulative):
            return []
        factors = []
        before = None
        for layer, used in zip(network.layers, cumulative):
            trailing = [1] * (layer.weight.dim() - 2)
            protected = used.view(-1, 1, *trailing)
            if before is not None:
                reads = layer.weight.shape[1]
                inputs = before.repeat_interleave(reads // len(before)) if reads != len(before) else before
                protected = torch.minimum(protected, inputs.view(1, -1, *trailing))
            factors.append((layer.weight, (1 - protected).expand_as(layer.weight).contiguous()))
            if layer.bias is not None:
                factors.append((layer.bias, 1 - used))
            before = used
        return factors

    def take_gates(self, tasks: torch.Tensor, smax: float) -> None:
        """At a stage's end: the cumulative gates take in the gates, at `smax`, of `tasks` (those
        the stage trained first)."""
        with torch.no_grad():
            tasks = tasks.to(self.embeddings[0].device)
            for used, gates in zip(self.cumulative(), self.gates(tasks, smax)):
                used.copy_(torch.maximum(used, gates.max(0).values))

    def used_units(self) -> list[float]:
        """Per gated layer, the share of its units some finished task uses (cumulative gate
        above 0.5): how much of the network the tasks so far have taken."""
        return [float((used > 0.5).float().mean()) for used in self.cumulative()]

    def compensate_embedding_gradients(self, scale: float, smax: float) -> None:
        """HAT's compensation of the embeddings' gradients for the annealed `scale` (up to `smax`)."""
        for embedding in self.embeddings:
            if embedding.grad is not None:
                e = embedding.detach()
                compensation = (torch.cosh((scale * e).clamp(-COSH_LIMIT, COSH_LIMIT)) + 1) / (torch.cosh(e) + 1)
                embedding.grad.mul_(smax / scale * compensation)

    def clamp_embeddings(self) -> None:
        """Keep the embeddings within [-EMBEDDING_LIMIT, EMBEDDING_LIMIT] (after every step)."""
        with torch.no_grad():
            for embedding in self.embeddings:
                embedding.clamp_(-EMBEDDING_LIMIT, EMBEDDING_LIMIT)
