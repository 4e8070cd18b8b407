"""Progressive neural networks (Rusu et al., "Progressive Neural Networks", 2016).

One column (a fresh copy of the backbone, initialized as the backbone initializes itself) per
task. Column k's weight layer i takes, besides its own input, the inputs of layer i of every
earlier column through a non-linear lateral adapter: U relu(V (alpha * a) + c), where a is those
inputs concatenated, alpha a learned per-feature (per-channel) scale, V projects them to the width
of one column's input, and U maps that as layer i maps its input (a linear map, or a convolution
of layer i's kernel, stride and padding; V is then a 1x1 convolution). The lateral joins the
layer's output before what follows it in the column (batch norm, activation). A residual block is
one such layer: its lateral is shaped as the block's first convolution and joins the residual
branch before the branch's last batch norm. A sample goes through the column of its task label.
The lateral inputs are detached: an earlier column is never trained by a later task's samples.
Where the columns have batch norm, an earlier column feeds each later one under running
statistics that the later one keeps of it (`FeederStatistics`), estimated on the later task's
data, as the paper's code's copies of the earlier columns do; its own statistics stay those of its
task. So once its task is over a column does not change (no forgetting, by construction), whatever
the optimizer.

A backbone can be grown into columns when its `features` are a sequence of `Linear` / `Conv2d`
layers, residual blocks (`BasicBlock`), batch norm and parameter-free operations (activations,
pooling, flattening), followed by a linear `classifier`: the MLPs, the small CNN and the ResNets.
Other layers have no lateral form here, and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.models.normalization import InputNormalization
from sylvan.models.resnet import BasicBlock

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d, BasicBlock)
# what may sit between the weight layers: operations of the column alone, without a lateral
BETWEEN_LAYERS = (
    nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity,
    nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d,
)


class Unit(nn.Module):
    """A weight layer and the operations that follow it in its column (for a residual block, the
    ReLU that ends it first)."""

    def __init__(self, layer: nn.Module, after: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layer = layer
        self.after = nn.Sequential(*after)

    def transform(self, h: torch.Tensor, lateral: torch.Tensor | None) -> torch.Tensor:
        """The weight layer's output with the lateral joined (None: no lateral), before the
        operations that follow. A residual block's ends before its last ReLU (which `after`
        applies), the lateral joined to its residual branch before the branch's batch norm."""
        if isinstance(self.layer, BasicBlock):
            return self.layer.pre_activation(h, lateral)
        z = self.layer(h)
        return z if lateral is None else z + lateral


class Column(nn.Module):
    """A backbone split into the operations before its first weight layer (`stem`: flattening,
    say) and its units, the classifier last."""

    def __init__(self, stem: Sequence[nn.Module], units: Sequence[Unit]) -> None:
        super().__init__()
        self.stem = nn.Sequential(*stem)
        self.units = nn.ModuleList(units)


def column_of(backbone: nn.Module) -> tuple[InputNormalization | None, Column]:
    """`backbone` (its own modules, not copies) as a column, with its input normalization apart;
    `ConfigurationError` if it cannot be one."""
    features, classifier = getattr(backbone, "features", None), getattr(backbone, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Linear):
        raise ConfigurationError(_cannot_grow(backbone, "no `features` sequence and linear `classifier`"))
    modules = list(features)
    normalization = modules.pop(0) if modules and isinstance(modules[0], InputNormalization) else None
    stem: list[nn.Module] = []
    units: list[tuple[nn.Module, list[nn.Module]]] = []
    for module in modules:
        if isinstance(module, WEIGHT_LAYERS):
            if isinstance(module, nn.Conv2d) and module.groups != 1:
                raise ConfigurationError(_cannot_grow(backbone, "a grouped convolution"))
            units.append((module, [nn.ReLU()] if isinstance(module, BasicBlock) else []))
        elif isinstance(module, BETWEEN_LAYERS):
            (units[-1][1] if units else stem).append(module)
        else:
            raise ConfigurationError(_cannot_grow(backbone, f"a {type(module).__name__}"))
    if not units:
        raise ConfigurationError(_cannot_grow(backbone, "no weight layer in its features"))
    units.append((classifier, []))
    return normalization, Column(stem, [Unit(layer, after) for layer, after in units])


def _cannot_grow(backbone: nn.Module, reason: str) -> str:
    return (
        f"pnn grows columns from backbones made of Linear and Conv2d layers, residual blocks, batch norm and "
        f"parameter-free operations (--backbone mlp, mlp_400, cnn, resnet18 or resnet18_reduced); "
        f"{type(backbone).__name__} has {reason}"
    )


class FeederStatistics(nn.Module):
    """The batch-norm running statistics of an earlier column j as it runs for a later column k's
    laterals, on k's task's data. Column j's own statistics describe its task's data; on another
    task's they can be far off (a channel of tiny variance there), so that the features it feeds
    k's laterals blow up. While column j feeds column k, these statistics take the place of its
    own: k's training updates them (j's weights and own statistics stay as they are), and at test
    time j normalizes k's samples as it did in k's training. Until the first batch of k's training
    they follow column j's own statistics."""

    def __init__(self, column: nn.Module) -> None:
        super().__init__()
        self.names = [name for name, module in column.named_modules() if _tracks_statistics(module)]
        for i, name in enumerate(self.names):
            module = column.get_submodule(name)
            self.register_buffer(f"mean_{i}", module.running_mean.clone())
            self.register_buffer(f"var_{i}", module.running_var.clone())
            self.register_buffer(f"batches_{i}", torch.zeros_like(module.num_batches_tracked))

    @contextmanager
    def installed(self, column: nn.Module) -> Iterator[None]:
        """Column j's batch norms with these statistics in place of their own, for the block."""
        modules = [column.get_submodule(name) for name in self.names]
        own = [(module.running_mean, module.running_var, module.num_batches_tracked) for module in modules]
        try:
            for i, module in enumerate(modules):
                mean, var, batches = (getattr(self, f"{kind}_{i}") for kind in ("mean", "var", "batches"))
                untrained = batches == 0  # not yet trained on: column j's own statistics (no host sync)
                mean.copy_(torch.where(untrained, module.running_mean, mean))
                var.copy_(torch.where(untrained, module.running_var, var))
                module.running_mean, module.running_var, module.num_batches_tracked = mean, var, batches
            yield
        finally:
            for module, (mean, var, batches) in zip(modules, own):
                module.running_mean, module.running_var, module.num_batches_tracked = mean, var, batches


def _tracks_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats


class LateralAdapter(nn.Module):
    """U relu(V (alpha * a) + c) for the earlier columns' inputs `a` (concatenated) of a layer
    like `layer`: alpha per feature or channel (drawn in [0, 0.1)), V to `reduced` features or
    channels, U shaped as `layer` (a linear map, or a convolution of its kernel, stride and
    padding; for a residual block, of its first convolution's), without bias."""

    def __init__(self, in_features: int, reduced: int, layer: nn.Module) -> None:
        super().__init__()
        layer = _shaping_layer(layer)
        if isinstance(layer, nn.Conv2d):
            self.alpha = nn.Parameter(torch.rand(1, in_features, 1, 1) * 0.1)
            self.project: nn.Module = nn.Conv2d(in_features, reduced, 1)
            self.out: nn.Module = nn.Conv2d(
                reduced, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, bias=False, padding_mode=layer.padding_mode,
            )
        else:
            self.alpha = nn.Parameter(torch.rand(1, in_features) * 0.1)
            self.project = nn.Linear(in_features, reduced)
            self.out = nn.Linear(reduced, layer.out_features, bias=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.project(a * self.alpha)))


def _shaping_layer(layer: nn.Module) -> nn.Module:
    """The Linear or Conv2d layer whose shape a lateral for `layer` takes: a residual block's first
    convolution (its input and output have the block's channels and size)."""
    return layer.conv1 if isinstance(layer, BasicBlock) else layer


def _input_width(layer: nn.Module) -> int:
    layer = _shaping_layer(layer)
    return layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features


class ProgressiveNetwork(nn.Module):
    """One column per task with lateral adapters; `forward(x, task_labels)` gives each sample
    the output of its task's column. The network starts with one column and `grow` adds the
    next, with its laterals from every earlier column, when its task begins: until then a task
    to come costs neither memory nor parameters. A column is computed only when a sample of its
    task, or of a later one, is in the batch."""

    def __init__(self, make_backbone: Callable[[], nn.Module], nb_columns: int = 1) -> None:
        """`nb_columns` columns (`grow` adds the others), each from a backbone `make_backbone()`
        gives freshly initialized."""
        super().__init__()
        if nb_columns < 1:
            raise ValueError(f"a progressive network needs at least one column, got {nb_columns}")
        normalization, column = column_of(make_backbone())
        self.normalization = normalization
        self.columns = nn.ModuleList([column])
        # laterals[k - 1][i - 1] feeds layer i of column k (k, i >= 1) from the inputs of layer i of columns 0..k-1
        self.laterals = nn.ModuleList()
        # feeder_statistics[k - 1][j]: column j's batch-norm statistics as it feeds column k (none
        # where the columns have no batch norm: a column then feeds every later one alike)
        self.has_statistics = any(_tracks_statistics(module) for module in column.modules())
        self.feeder_statistics = nn.ModuleList() if self.has_statistics else None
        for _ in range(nb_columns - 1):
            self.grow(make_backbone())

    def grow(self, backbone: nn.Module) -> None:
        """Add column k (k the columns so far) from the freshly initialized `backbone` (of the
        first column's architecture), with its lateral adapters from columns 0..k-1, drawn as
        the paper's code draws them, on the device of the columns before it."""
        k = self.nb_columns
        device = next(self.columns[0].parameters()).device
        column = column_of(backbone)[1]
        layers = [unit.layer for unit in column.units]
        laterals = nn.ModuleList(LateralAdapter(k * _input_width(layer), _input_width(layer), layer)
                                 for layer in layers[1:])
        for module in laterals.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.columns.append(column.to(device))
        self.laterals.append(laterals.to(device))
        if self.feeder_statistics is not None:
            self.feeder_statistics.append(
                nn.ModuleList(FeederStatistics(self.columns[j]) for j in range(k)).to(device))

    @property
    def nb_columns(self) -> int:
        return len(self.columns)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        if task_labels is None:
            raise ValueError("a progressive network needs the task label of every sample")
        task_labels = task_labels.to(x.device).long()
        if len(x) == 0:
            return x.new_zeros(0, self.columns[0].units[-1].layer.out_features)
        counts = torch.bincount(task_labels.flatten(), minlength=self.nb_columns).tolist()
        if len(counts) > self.nb_columns:
            raise ValueError(f"task label {len(counts) - 1} has no column: the network has {self.nb_columns}")
        present = [count > 0 for count in counts]
        present = present[: max(k for k, p in enumerate(present) if p) + 1]  # no column past the last task's
        if self.normalization is not None:
            x = self.normalization(x)
        outputs = self.outputs_with_statistics(x, present) if self.has_statistics else self.outputs_shared(x, present)
        stacked = torch.stack(outputs)  # (columns up to the last present one, batch, classes)
        return stacked[task_labels, torch.arange(len(x), device=x.device)]

    def outputs_shared(self, x: torch.Tensor, present: Sequence[bool]) -> list[torch.Tensor]:
        """Every column's output up to the last present one, each column computed once: without
        batch norm a column feeds every later one alike."""
        outputs: list[torch.Tensor] = []
        inputs: list[list[torch.Tensor]] = []  # inputs[k][i]: column k's input to its layer i (detached)
        for k in range(len(present)):
            # a column without samples of its own only feeds later columns' laterals (detached): no graph for it
            with torch.set_grad_enabled(torch.is_grad_enabled() and present[k]):
                out, own = self.column_forward(k, x, inputs)
            outputs.append(out)
            inputs.append(own)
        return outputs

    def outputs_with_statistics(self, x: torch.Tensor, present: Sequence[bool]) -> list[torch.Tensor]:
        """The outputs of the present columns (zeros elsewhere), each computed on the earlier
        columns' features under the batch-norm statistics it keeps of them (`FeederStatistics`)."""
        outputs: list[torch.Tensor] = []
        for k, wanted in enumerate(present):
            if not wanted:
                outputs.append(x.new_zeros(len(x), self.columns[k].units[-1].layer.out_features))
                continue
            inputs: list[list[torch.Tensor]] = []
            with torch.no_grad():  # the features reach the laterals detached
                for j in range(k):
                    with self.feeder_statistics[k - 1][j].installed(self.columns[j]):
                        inputs.append(self.column_forward(j, x, inputs)[1])
            outputs.append(self.column_forward(k, x, inputs)[0])
        return outputs

    def column_forward(
        self, k: int, x: torch.Tensor, inputs: Sequence[Sequence[torch.Tensor]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Column k's output for `x` given the earlier columns' layer inputs, and its own layer
        inputs, detached, for the later columns' laterals."""
        column = self.columns[k]
        h = column.stem(x)
        own: list[torch.Tensor] = []
        for i, unit in enumerate(column.units):
            own.append(h.detach())
            lateral = None
            if k > 0 and i > 0:
                lateral = self.laterals[k - 1][i - 1](torch.cat([inputs[j][i] for j in range(k)], dim=1))
            h = unit.after(unit.transform(h, lateral))
        return h, own

    def column_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters that column k's output depends on and that only its task trains: its
        layers and its lateral adapters."""
        own = list(self.columns[k].parameters())
        return own + (list(self.laterals[k - 1].parameters()) if k > 0 else [])

    def extra_repr(self) -> str:
        return f"columns={self.nb_columns}, parameters={sum(math.prod(p.shape) for p in self.parameters())}"
