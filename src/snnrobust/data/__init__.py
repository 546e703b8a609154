"""Datasets by name: ``get_dataset(name, root=None, download=False, split_seed=0)``.

Every dataset returns :class:`DatasetSplits` (train and test :class:`ImageDataset`, images
uint8 [N, C, H, W] read as float pixels in [0, 1]) and a :class:`DatasetInfo` recording the
exact split. Registered: mnist5k (embedded default), fashion-mnist, cifar10, cifar100.
"""

from .augment import AUGMENTS, augment_batch
from .base import DatasetInfo, DatasetSplits, ImageDataset
from .registry import DATASETS, DatasetEntry, get_dataset, list_datasets, register_dataset, resolve_name
from . import cifar, fashion_mnist, mnist5k  # noqa: F401,E402  (register the datasets)

DEFAULT_DATASET = "mnist5k"

__all__ = [
    "AUGMENTS",
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetEntry",
    "DatasetInfo",
    "DatasetSplits",
    "ImageDataset",
    "augment_batch",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "resolve_name",
]
