"""Networks made of modules: pools of them, one pool per depth, as MNTDP grows them (Veniat,
Denoyer, Ranzato, ICLR 2021), and hard mixtures of experts over a shared trunk (Gross, Ranzato,
Szlam, CVPR 2017).

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

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.models.kmeans import nearest
from sylvan.models.normalization import InputNormalization
from sylvan.models.progressive import BETWEEN_LAYERS
from sylvan.models.resnet import BasicBlock
from sylvan.models.routing import outputs_by_group


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
        def through_path(task: int, rows: torch.Tensor) -> torch.Tensor | None:
            if task >= len(self.paths):
                return None
            h = self.normalization(x[rows])
            for depth, index in enumerate(self.paths[task]):
                h = self.layers[depth][index](h)
            return h

        outputs = outputs_by_group(task_labels, through_path)
        return outputs if outputs is not None else x.new_zeros(len(x), 0)

    def module_counts(self) -> list[int]:
        """How many modules each depth holds."""
        return [len(layer) for layer in self.layers]


class HardMixture(nn.Module):
    """A hard mixture of experts (Gross, Ranzato, Szlam, CVPR 2017) grown from a trunk network cut
    into modules. Each expert is a copy of the trunk network's last `expert_modules` modules (0:
    all of them, a whole network over the input) over the output of its other modules, which the
    experts share; the gater sends each input to the expert of the prototype (`prototypes`, one
    per expert) nearest its features under the trunk network (every module but its last). Until
    there are experts, the trunk network answers whole; then one expert runs per input. Gating
    costs nothing beyond the experts' input where experts own only the last module."""

    def __init__(self, backbone: nn.Module, expert_modules: int) -> None:
        super().__init__()
        normalization, blocks = blocks_of(backbone)
        owned = len(blocks) if expert_modules == 0 else expert_modules
        if not 1 <= owned <= len(blocks):
            raise ConfigurationError(f"--expert_modules: the network is cut into {len(blocks)} modules, so each "
                                     f"expert owns from 1 to {len(blocks)} of them (0: all), got {expert_modules}")
        self.backbone = backbone  # the trunk network as first trained, head included
        self.normalization = normalization if normalization is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)  # the backbone's own modules
        self.shared = len(blocks) - owned  # the first modules, which every expert takes its input from
        self.experts = nn.ModuleList()
        self.register_buffer("prototypes", torch.zeros(0, 0))

    def routed_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The experts' input for `x`, and the features the gater routes it by (flattened)."""
        h = self.normalization(x)
        for module in self.blocks[:self.shared]:
            h = module(h)
        gate = h
        for module in self.blocks[self.shared:-1]:
            gate = module(gate)
        return h, gate.flatten(1).float()

    def new_expert(self, like: nn.Module | None = None) -> nn.Sequential:
        """A copy of `like` (an expert), or of the trunk network's own last modules."""
        if like is not None:
            return copy.deepcopy(like)
        return nn.Sequential(*copy.deepcopy(list(self.blocks[self.shared:])))

    def expert_network(self, expert: int) -> PathNetwork:
        """The shared modules (frozen) and expert `expert`'s, as the network that trains the expert."""
        return PathNetwork(self.normalization, [*self.blocks[:self.shared], *self.experts[expert]], self.shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.experts):
            return self.backbone(x)
        h, gate = self.routed_inputs(x)
        gated, _ = nearest(gate, self.prototypes)
        outputs = outputs_by_group(gated, lambda expert, rows: self.experts[expert](h[rows]))
        assert outputs is not None  # every sample goes to an expert
        return outputs


def bytes_when_made(make: Callable[[], list[nn.Module]]) -> int:
    """The bytes of the parameters and buffers of the modules `make()` returns, made on the meta
    device (no storage, and no generator drawn from) to be measured before they exist."""
    with torch.device("meta"):
        modules = make()
    return sum(t.numel() * t.element_size() for module in modules for t in [*module.parameters(), *module.buffers()])
