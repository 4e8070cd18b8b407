"""Why sylvan's `icarl` beats the published Seq-MNIST figure: the nearest-mean-of-exemplars
classifier of the reference code behind the DER paper's table differs from the iCaRL paper.

The iCaRL paper L2-normalizes features and averages each class's exemplar features. The
reference code uses unnormalized features and, computing each class mean over batches of
`batch_size` exemplars, folds the batches in with a running pairwise average
(`mean += batch_mean; mean /= 2`), which weights the last batch 1/2, the one before 1/4, ...:
with 50 exemplars per class (buffer 500) in batches of 10, the "mean" is dominated by the last
exemplars, the least representative ones in herding order. This script runs sylvan's `icarl`
and the same method with the reference code's classifier on the same seeds.

    python benchmarks/icarl_reference_means.py --data_dir ~/.cache/sylvan/data [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import ClassVar

import torch

from sylvan.methods import ICaRL
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.online import DEFAULT_DATA_DIR


@dataclass
class ICaRLReferenceMeans(ICaRL):
    """iCaRL with the reference code's classifier: unnormalized features, running pairwise
    average of per-batch means (batches of `batch_size`, in exemplar order)."""

    name: ClassVar[str] = ""  # not registered: a benchmark variant only

    def features(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model.features(x.to(next(model.parameters()).device)).flatten(1).cpu()
        model.train(was_training)
        return out

    def exemplar_means(self) -> torch.Tensor:
        stored = self.buffer.get_all()
        labels = stored["y"].cpu()
        batch = self.setting.batch_size
        means = None
        for label in labels.unique().tolist():
            exemplars = stored["x"][labels == label]
            running = None
            for start in range(0, len(exemplars), batch):
                batch_mean = self.features(exemplars[start : start + batch]).mean(0)
                running = batch_mean if running is None else (running + batch_mean) / 2
            if means is None:
                means = torch.full((self.setting.num_classes, len(running)), float("nan"))
            means[label] = running
        return means

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        if self.class_means is None:
            return super().scores(x, task_labels)
        features = self.model.features(x).flatten(1)
        means = self.class_means.to(features.device)
        scores = (-torch.cdist(features, torch.nan_to_num(means)).pow(2)).masked_fill(
            torch.isnan(means).any(1), float("-inf"))
        return self.mask_to_tasks(scores, task_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--buffer_sizes", type=int, nargs="+", default=[200, 500])
    args = parser.parse_args()
    for buffer_size in args.buffer_sizes:
        for label, cls in [("icarl (paper classifier)", ICaRL), ("reference code's classifier", ICaRLReferenceMeans)]:
            scores = []
            for seed in args.seeds:
                setting = ClassIncrementalSetting(dataset="mnist", nb_tasks=5, batch_size=10, epochs=1, seed=seed,
                                                  data_dir=args.data_dir, progress_bar=False)
                results = setting.apply(cls(lr=0.1, buffer_size=buffer_size, backbone="mlp"))
                scores.append(100 * results.final_average_accuracy)
                print(f"buffer {buffer_size}, {label}, seed {seed}: class-IL {scores[-1]:.2f}", flush=True)
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            print(f"buffer {buffer_size}, {label}: {statistics.mean(scores):.2f} ± {std:.2f}", flush=True)


if __name__ == "__main__":
    main()
