"""What preparing Seq-TinyImageNet's tasks costs: sylvan decodes the image files with a thread per
core into one uint8 array, then builds the tasks from it as it does CIFAR's, keeping uint8 pixels
(`decoding.decode_images`, `decoding.images_at_once`); against continuum's own path, which opens,
decodes and converts the files to float32 one at a time as its task sets are indexed; and with
`--image_cache` (`settings/image_cache.py`), the first run, which decodes and keeps the array,
then a later one, which reads it back.

    python benchmarks/image_files.py [--data_dir DIR] [--threads 1 2] [--skip_file_by_file] [--skip_cache]

With `--data_dir`, the Tiny ImageNet folder under it (`DIR/tiny-imagenet-200/`); without, a
generated copy of the same size and layout (200 classes, 500 training and 50 test JPEG files of
64x64 each, smooth random images that compress about as photographs do) in a temporary folder.
Prints the seconds and peak memory (resident) of each way, each run in a process of its own, for
10 tasks of 20 classes (the DER paper's protocol).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sylvan.settings.data.decoding import usable_cores


def write_tiny_imagenet(
    root: Path, classes: int = 200, train_per_class: int = 500, test_per_class: int = 50, seed: int = 0,
    greyscale: tuple[int, int] | None = None,
) -> Path:
    """A Tiny ImageNet folder `root/tiny-imagenet-200` with the official archive's layout
    (`wnids.txt`, `train/WNID/WNID_boxes.txt`, `train/WNID/images/`, `val/val_annotations.txt`,
    `val/images/`) holding smooth random 64x64 JPEG images. `greyscale` = (class, index) saves
    that training image in greyscale, as a few of the real ones are. Returns `root`."""
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(classes)]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))

    def image(rng: np.random.Generator) -> Image.Image:
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        return Image.fromarray(coarse).resize((64, 64), Image.BILINEAR)

    def write_class(label: int) -> list[str]:
        rng = np.random.default_rng([seed, label])
        wnid = wnids[label]
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for index in range(train_per_class):
            name = f"{wnid}_{index}.JPEG"
            picture = image(rng)
            (picture.convert("L") if (label, index) == greyscale else picture).save(images / name)
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
        annotations = []
        for index in range(test_per_class):
            name = f"val_{label * test_per_class + index}.JPEG"
            image(rng).save(folder / "val" / "images" / name)
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
        return annotations

    with ThreadPoolExecutor(usable_cores()) as pool:
        annotations = [line for lines in pool.map(write_class, range(classes)) for line in lines]
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return root


def peak_memory_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def row(way: str, seconds: float, note: str = "") -> None:
    print(f"{way:<46} | {seconds:8.1f} | {peak_memory_gib():8.2f}{note}", flush=True)


def measure(way: str, root: Path, cache: str | None) -> None:
    """Time one way of preparing the tasks (in a process of its own, so its peak is its own)."""
    import torch
    from continuum.datasets import TinyImageNet200
    from continuum.scenarios import ClassIncremental

    from sylvan.settings import ClassIncrementalSetting
    from sylvan.settings.data.decoding import decode_images, materialize_per_sample

    start = time.perf_counter()
    if way.startswith("decode"):
        threads = int(way.split(":")[1])
        for train in (True, False):
            decode_images(TinyImageNet200(str(root), train=train, download=False), threads=threads)
        row(f"decode the files only, {threads} thread(s)", time.perf_counter() - start)
    elif way.startswith("sylvan"):
        tasks = ClassIncrementalSetting(
            dataset="tiny_imagenet", data_dir=str(root), nb_tasks=10, progress_bar=False,
            image_cache=None if way == "sylvan" else cache,
        ).prepare_tasks()
        size = sum(x.numel() * x.element_size() for task in tasks for x in (task.x_train, task.x_test)) / 2**30
        images = sum(len(task.y_train) + len(task.y_test) for task in tasks)
        dtype = str(tasks[0].x_train.dtype).removeprefix("torch.")
        label = {"sylvan": "sylvan: decode, then build whole tasks",
                 "sylvan:store": "  --image_cache, first run (decode, keep)",
                 "sylvan:cached": "  --image_cache, later run (read back)"}[way]
        row(label, time.perf_counter() - start,
            f"  ({images} images, {size:.2f} GiB of {dtype} tasks; torch threads: {torch.get_num_threads()})")
    elif way == "continuum":
        kept = []  # as a setting would keep its tasks
        for train in (True, False):
            scenario = ClassIncremental(TinyImageNet200(str(root), train=train, download=False), nb_tasks=10)
            kept += [materialize_per_sample(taskset) for taskset in scenario]
        size = sum(x.numel() * x.element_size() for x, _ in kept) / 2**30
        row("continuum: file by file (ToTensor per sample)", time.perf_counter() - start,
            f"  ({size:.2f} GiB of float32 tasks)")
    else:
        raise SystemExit(f"unknown way {way!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=None, help="folder holding tiny-imagenet-200/ (default: generate one)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, usable_cores()])
    parser.add_argument("--skip_file_by_file", action="store_true", help="leave out continuum's per-file path")
    parser.add_argument("--skip_cache", action="store_true", help="leave out the runs with --image_cache")
    parser.add_argument("--way", default=None, help=argparse.SUPPRESS)  # one measurement, in a child process
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way is not None:
        measure(args.way, Path(args.data_dir), args.cache)
        return

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data_dir) if args.data_dir else None
        if root is None:
            start = time.perf_counter()
            root = write_tiny_imagenet(Path(scratch))
            print(f"generated a Tiny ImageNet-sized folder in {time.perf_counter() - start:.1f} s")
        print(f"Seq-TinyImageNet (10 tasks of 20 classes) from {root}/tiny-imagenet-200 on {usable_cores()} cores; "
              "each way in a process of its own")
        header = f"{'way':<46} | {'seconds':>8} | {'peak GiB':>8}"
        print(header)
        print("-" * len(header), flush=True)
        ways = [f"decode:{threads}" for threads in args.threads] + ["sylvan"]
        ways += [] if args.skip_cache else ["sylvan:store", "sylvan:cached"]
        ways += [] if args.skip_file_by_file else ["continuum"]
        cache = str(Path(scratch) / "image_cache")  # empty until sylvan:store fills it
        for way in ways:
            subprocess.run([sys.executable, __file__, "--data_dir", str(root), "--way", way, "--cache", cache],
                           check=True)


if __name__ == "__main__":
    main()
