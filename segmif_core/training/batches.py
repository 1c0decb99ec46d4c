"""Training data: the checked train and val datasets, and the batch plan as a function of
(seed, step) that makes data order and augmentation resumable."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.classes import get_class_set
from ..data.pairs import PairDataset, check_pairs, list_pairs, read_pair


class _Seeded(Dataset):
    """Items addressed by (index, seed, source): item ``index`` of ``datasets[source]`` (the same
    pairs with different crops), whose augmentation depends only on its seed."""

    def __init__(self, *datasets: PairDataset):
        self.datasets = datasets

    def __len__(self):
        return len(self.datasets[0])

    def __getitem__(self, key):
        index, seed, source = key
        if index is None:  # a step whose batch does not come from the loader
            return {"skipped": torch.zeros(())}
        torch.manual_seed(seed)
        return self.datasets[source][index]


class StepBatches:
    """Batch plan as a function of (seed, step): an epoch-wise permutation of the training set,
    ``batch`` items per process and step, rank ``rank`` of ``world`` taking its own slice.
    Iterating from ``start`` resumes exactly where a run stopped. Steps for which ``skip(step)``
    is true yield a placeholder ``[(None, step)]`` (their batch is made elsewhere, e.g. from the
    fused-image cache), so the loader loads nothing for them. ``source(step)`` (default 0) picks
    the dataset of ``_Seeded`` that serves the step (0 segmentation crops, 1 fusion crops)."""

    def __init__(self, n: int, batch: int, seed: int, start: int = 0, rank: int = 0,
                 world: int = 1, skip=None, source=None):
        if n < batch * world:
            raise ValueError(f"{n} training pairs is fewer than one global batch "
                             f"({batch} x {world} processes)")
        self.n, self.batch, self.seed, self.start = n, batch, seed, start
        self.rank, self.world, self.skip = rank, world, skip
        self.source = source or (lambda step: 0)
        self.per_epoch = n // (batch * world)

    def indices(self, step: int) -> list[tuple[int, int]]:
        epoch, pos = divmod(step, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch)).tolist()
        first = (pos * self.world + self.rank) * self.batch
        return [(perm[first + j], (self.seed * 7_919 + step) * 4_096 + self.rank * 256 + j)
                for j in range(self.batch)]

    def __iter__(self):
        step = self.start
        while True:
            if self.skip is not None and self.skip(step):
                yield [(None, step, 0)]
            else:
                src = self.source(step)
                yield [(index, seed, src) for index, seed in self.indices(step)]
            step += 1

    def __len__(self):  # effectively infinite; DataLoader needs a length only for len()
        return 2 ** 62


def build_datasets(cfg: dict):
    """(train PairDataset, val PairDataset, class set) after checking every file."""
    d = cfg["data"]
    th = d["thermal"]
    layout = {"layout": d["layout"]} if d.get("layout") else {}
    common = dict(size=tuple(d["size"]), thermal_mode=th["mode"], thermal_low=th["low"],
                  thermal_high=th["high"], thermal_min=th["min"], thermal_max=th["max"],
                  **layout)
    classes = get_class_set(d["classes"])
    train_names = list_pairs(d["root"], d["train_split"], **layout)
    val_names = list_pairs(d["root"], d["val_split"], **layout)
    # every file is checked before the first step: a bad pair must not stop the run later
    for names in (train_names, val_names):
        check_pairs(d["root"], names, require_labels=True, num_classes=classes.num_classes,
                    **layout)
    train = PairDataset(d["root"], train_names, train=True, crop=tuple(d["crop"]),
                        scale_range=tuple(d["scale_range"]), brightness=d["brightness"],
                        flip=d["flip"], cache=bool(d.get("cache", False)),
                        modality_dropout=float(d.get("modality_dropout", 0.0)),
                        thermal_gain=tuple(d.get("thermal_gain", (1.0, 1.0))), **common)
    val = PairDataset(d["root"], val_names, train=False, cache=bool(d.get("cache", False)),
                      **common)
    return train, val, classes


def label_counts(dataset: PairDataset, num_classes: int) -> torch.Tensor:
    counts = np.zeros(num_classes, np.int64)
    kw = {"layout": dataset.layout} if hasattr(dataset, "layout") else {}
    for n in dataset.names:
        lab = read_pair(dataset.root, n, **kw)[2]
        counts += np.bincount(lab.ravel(), minlength=num_classes)[:num_classes]
    return torch.from_numpy(counts)
