"""``fashion-mnist``: Zalando's 60,000/10,000 28x28 grayscale images from their four IDX files.

Looked for (plain or .gz) in ``root`` (or ``root/fashion-mnist``) when given, else in
:data:`SYSTEM_DIRS` (where Debian's package dataset-fashion-mnist installs them) and in
``data_home()/fashion-mnist`` (where ``download=True`` puts them). The official split is used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DatasetError
from .base import DatasetInfo, DatasetSplits, ImageDataset
from .download import DownloadError, data_home, fetch
from .idx import read_idx
from .registry import register_dataset
from .splits import split_record

SYSTEM_DIRS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MD5 of the official .gz files (as published by Zalando Research and used by torchvision)
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FILE_LIST = ", ".join(f"{b}[.gz]" for b in FILES.values())


def _how(reason: str) -> str:
    return (
        f"{reason}: run `apt-get install dataset-fashion-mnist`, or pass --data-root DIR containing the four "
        f"IDX files ({_FILE_LIST})"
    )


def default_dirs() -> list[Path]:
    return [*SYSTEM_DIRS, data_home() / "fashion-mnist"]


def _candidate_dirs(root: Optional[Path]) -> list[Path]:
    return [root, root / "fashion-mnist"] if root is not None else default_dirs()


def _find(directory: Path, base: str) -> Optional[Path]:
    for name in (base + ".gz", base):
        p = directory / name
        if p.is_file():
            return p
    return None


def _locate(dirs: list[Path]) -> tuple[Optional[dict[str, Path]], str]:
    """The four files from the first folder holding all of them, else (None, what is missing where)."""
    partial = ""
    for d in dirs:
        found = {k: _find(d, base) for k, base in FILES.items()}
        missing = [FILES[k] for k, p in found.items() if p is None]
        if not missing:
            return found, ""  # type: ignore[return-value]
        if len(missing) < len(FILES) and not partial:
            partial = f"; {d} lacks {', '.join(missing)}"
    return None, partial


def _download(target: Path) -> None:
    for base in FILES.values():
        if _find(target, base) is None:
            name = base + ".gz"
            try:
                fetch([m + name for m in MIRRORS], target / name, MD5.get(name))
            except DownloadError as e:
                raise DatasetError(_how(f"could not download Fashion-MNIST into {target} ({e})")) from None


def _stamp(paths: dict[str, Path]) -> tuple:
    return tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values())


@functools.lru_cache(maxsize=2)
def _read_all(stamp: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read and validate the four files named in ``stamp`` (cached on path, size and mtime)."""
    tr_x_p, tr_y_p, te_x_p, te_y_p = (Path(s[0]) for s in stamp)
    out = []
    for xp, yp in ((tr_x_p, tr_y_p), (te_x_p, te_y_p)):
        x, y = read_idx(xp), read_idx(yp)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DatasetError(f"{xp} holds {x.dtype} {list(x.shape)}, expected uint8 [N, 28, 28] images; "
                               "get the file again")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{yp} holds {y.dtype} {list(y.shape)}, expected [N] integer labels; get the file again")
        if len(y) != len(x):
            raise DatasetError(f"{xp} has {len(x)} images but {yp} has {len(y)} labels; get both files again")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DatasetError(f"{yp} has labels outside 0..9; get the file again")
        out += [torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y.astype(np.int64))]
    return tuple(out)  # type: ignore[return-value]


def _where() -> str:
    return f"--data-root DIR, else {', '.join(str(d) for d in default_dirs())} (apt-get install dataset-fashion-mnist)"


@register_dataset(
    "fashion-mnist",
    description="Fashion-MNIST, 10 clothing classes, official 60,000/10,000 split, from its IDX files",
    in_channels=1,
    image_size=28,
    num_classes=10,
    sizes=(60000, 10000),
    locate=_where,
    aliases=("fashionmnist", "fmnist"),
)
def load_fashion_mnist(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    """The official split; ``split_seed`` does not apply (recorded as seed None)."""
    dirs = _candidate_dirs(root)
    paths, missing = _locate(dirs)
    if paths is None and download:
        target = root if root is not None else data_home() / "fashion-mnist"
        _download(target)
        paths, missing = _locate([target])
    if paths is None:
        raise DatasetError(_how(f"Fashion-MNIST IDX files not found in {' or '.join(map(str, dirs))}{missing}"))
    tr_x, tr_y, te_x, te_y = _read_all(_stamp(paths))
    # clone: the cache must not be changed through the datasets we hand out
    train, test = ImageDataset(tr_x.clone(), tr_y.clone()), ImageDataset(te_x.clone(), te_y.clone())
    split = split_record(
        "official",
        None,
        np.arange(len(train)),
        np.arange(len(test)),
        train,
        test,
        index_base="records of the train file and of the t10k file",
    )
    info = DatasetInfo(
        name="fashion-mnist",
        in_channels=1,
        image_size=28,
        num_classes=10,
        class_names=list(CLASS_NAMES),
        n_train=len(train),
        n_test=len(test),
        source=str(paths["train_images"].parent),
        split=split,
        augment=None,
    )
    return DatasetSplits(train, test, info)
