"""Networks made of modules taken from pools, one pool per depth, as the modular methods grow them
(MNTDP: Veniat, Denoyer, Ranzato, ICLR 2021).

A backbone is cut into a sequence of modules (`blocks_of`): each weight layer (`Linear`,
`Conv2d`) starts a module, with the batch norm and parameter-free operations that follow it; the
residual blocks of one stage of a ResNet (the same width, no stride between them) make one module;
the classifier is the last module. So the MLPs cut into their hidden layers and the classifier, and
the ResNet-18 into 6 modules (the stem, its 4 stages, the classifier), as MNTDP cuts it.

A `ModulePool` holds every module trained so far at each depth and, for each task, its path (the
module it uses at each depth); a sample goes through its task's path. A `PathNetwork` is one path
being trained: modules reused from the pool stay frozen (no gradient, batch norm in evaluation
mode, whatever mode the network is put in), the others learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.models.normalization import InputNormalization
from sylvan.models.progressive import BETWEEN_LAYERS
from sylvan.models.resnet import BasicBlock


def blocks_of(backbone: nn.Module) -> tuple[InputNormalization | None, list[nn.Sequential]]:
    """`backbone`'s own modules cut into a sequence of modules (see the module's docstring), its
    input normalization apart; `ConfigurationError` if it cannot be cut."""
    features, classifier = getattr(backbone, "features", None), getattr(backbone, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Linear):
        raise ConfigurationError(_cannot_cut(backbone, "no `features` sequence and linear `classifier`"))
    layers = list(features)
    normalization = layers.pop(0) if layers and isinstance(layers[0], InputNormalization) else None
    blocks: list[list[nn.Module]] = []
    leading: list[nn.Module] = []  # parameter-free operations before the first weight layer (a flattening)
    for layer in layers:
        same_stage = (isinstance(layer, BasicBlock) and blocks and isinstance(blocks[-1][-1], BasicBlock)
                      and layer.conv1.stride == (1, 1) and isinstance(layer.shortcut, nn.Identity))
        if isinstance(layer, (nn.Linear, nn.Conv2d, BasicBlock)) and not same_stage:
            blocks.append([*leading, layer])
            leading = []
        elif isinstance(layer, BasicBlock) or (isinstance(layer, BETWEEN_LAYERS) and blocks):
            blocks[-1].append(layer)
        elif isinstance(layer, BETWEEN_LAYERS):
            leading.append(layer)
        else:
            raise ConfigurationError(_cannot_cut(backbone, f"a {type(layer).__name__}"))
    if not blocks:
        raise ConfigurationError(_cannot_cut(backbone, "no weight layer in its features"))
    return normalization, [nn.Sequential(*block) for block in blocks] + [nn.Sequential(classifier)]


def _cannot_cut(backbone: nn.Module, reason: str) -> str:
    return (f"a modular network is cut from a backbone of Linear and Conv2d layers, residual blocks, batch norm and "
            f"parameter-free operations (--backbone mlp, mlp_400, cnn, resnet18 or resnet18_reduced); "
            f"{type(backbone).__name__} has {reason}")


class PathNetwork(nn.Module):
    """One path through the depths: `modules` in order, those at the depths below `reused` frozen."""

    def __init__(self, normalization: nn.Module | None, modules: Sequence[nn.Module], reused: int) -> None:
        super().__init__()
        self.normalization = normalization if normalization is not None else nn.Identity()
        self.path = nn.ModuleList(modules)
        self.reused = reused
        for module in self.path[:reused]:
            module.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> PathNetwork:
        super().train(mode)
        for module in self.path[:self.reused]:
            module.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of every module but the last (the head): what the k-NN prior compares."""
        h = self.normalization(x)
        for module in self.path[:-1]:
            h = module(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.path[-1](self.features(x))


class ModulePool(nn.Module):
    """Every module trained so far, per depth (`layers[depth][index]`), and each task's path (the
    index of its module at each depth)."""

    def __init__(self, normalization: nn.Module | None, depth: int) -> None:
        super().__init__()
        self.normalization = normalization if normalization is not None else nn.Identity()
        self.layers = nn.ModuleList(nn.ModuleList() for _ in range(depth))
        self.paths: list[tuple[int, ...]] = []

    def add_path(self, network: PathNetwork) -> tuple[int, ...]:
        """Record `network` as the next task's path, its trained modules added to the pool; the
        reused ones are found there. Returns the path."""
        path = []
        for depth, module in enumerate(network.path):
            pool = self.layers[depth]
            found = next((index for index, held in enumerate(pool) if held is module), None)
            if found is None:
                if depth < network.reused:
                    raise ValueError(f"the module reused at depth {depth} is not in the pool")
                pool.append(module)
                found = len(pool) - 1
            path.append(found)
        self.paths.append(tuple(path))
        return self.paths[-1]

    def path_network(self, task: int, reused: int | None = None) -> PathNetwork:
        """Task `task`'s path as a network (its modules, not copies), every module frozen unless
        `reused` says how many of the first are."""
        modules = [self.layers[depth][index] for depth, index in enumerate(self.paths[task])]
        return PathNetwork(self.normalization, modules, len(modules) if reused is None else reused)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor) -> torch.Tensor:
        """Each sample's output through its task's path; None for a sample of a task without one."""
        outputs: torch.Tensor | None = None
        for task in task_labels.unique().tolist():
            if task >= len(self.paths):
                continue
            rows = task_labels == task
            h = self.normalization(x[rows])
            for depth, index in enumerate(self.paths[task]):
                h = self.layers[depth][index](h)
            if outputs is None:
                outputs = h.new_zeros(len(x), h.shape[1])
            outputs[rows] = h
        return outputs if outputs is not None else x.new_zeros(len(x), 0)

    def module_counts(self) -> list[int]:
        """How many modules each depth holds."""
        return [len(layer) for layer in self.layers]
