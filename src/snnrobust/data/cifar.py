"""``cifar10`` / ``cifar100`` from the standard python-pickle folders (official split).

``root`` may be the folder itself (cifar-10-batches-py, cifar-100-python) or its parent;
without ``root`` the folder is looked for in ``data_home()``. If only the official
.tar.gz is there it is verified and extracted; ``download=True`` fetches it first.
Pickles are read with :func:`~.safe_pickle.load_restricted`, which cannot run code.
Each data row is 3072 uint8 values, channel-major (1024 R, 1024 G, 1024 B), i.e. [3, 32, 32].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import DatasetError
from .base import DatasetInfo, DatasetSplits, ImageDataset
from .download import DownloadError, data_home, extract_tar, fetch, md5_file
from .registry import register_dataset
from .safe_pickle import load_restricted
from .splits import split_record


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    url: str
    archive: str
    md5: str


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        "cifar10",
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
        10,
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": CifarSpec(
        "cifar100",
        "CIFAR-100",
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        "fine_labels",
        "fine_label_names",
        100,
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def _how(spec: CifarSpec, reason: str) -> str:
    return (
        f"{reason}: put the folder {spec.folder} (unpacked from {spec.url}) in a directory DIR and pass "
        f"--data-root DIR"
    )


def _is_folder(d: Path, spec: CifarSpec) -> bool:
    return d.is_dir() and (d / spec.test_file).exists()


def _find_folder(root: Optional[Path], spec: CifarSpec, download: bool) -> Path:
    if root is None:
        base, candidates = data_home(), [data_home() / spec.folder]
    elif root.name == spec.folder:  # root is the folder itself
        base, candidates = root.parent, [root]
    else:
        base, candidates = root, [root, root / spec.folder]
    for d in candidates:
        if _is_folder(d, spec):
            return d
    # A folder of that name that lacks its files: report it rather than download over it.
    if (base / spec.folder).is_dir():
        raise DatasetError(_how(spec, f"{base / spec.folder} lacks {spec.test_file}"))
    archive = base / spec.archive
    try:
        if not archive.is_file():
            if not download:
                where = " or ".join(str(d) for d in candidates)
                raise DatasetError(_how(spec, f"{spec.title} not found in {where}"))
            fetch([spec.url], archive, spec.md5)
        elif md5_file(archive) != spec.md5:
            raise DatasetError(_how(spec, f"{archive} does not have the official MD5 {spec.md5}; delete it"))
        return extract_tar(archive, base, spec.folder)
    except DownloadError as e:
        raise DatasetError(_how(spec, f"could not get {spec.title} into {base} ({e})")) from None


def _str_keys(d: Any, path: Path) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise DatasetError(f"{path} holds a {type(d).__name__}, not a CIFAR dict; replace it with the official file")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


def _read_batch(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) from one batch file."""
    if not path.is_file():
        raise DatasetError(_how(spec, f"{path} is missing"))
    d = _str_keys(load_restricted(path), path)
    if "data" not in d or spec.label_key not in d:
        raise DatasetError(f"{path} has no 'data'/'{spec.label_key}' entries; "
                           f"replace it with the official {spec.title} file")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        desc = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DatasetError(f"{path}: 'data' is {desc}, expected uint8 [N, 3072]; replace it with the official file")
    try:
        y = np.asarray(d[spec.label_key])
    except (ValueError, TypeError):
        y = np.zeros(0, dtype=object)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{path}: '{spec.label_key}' is not {len(x)} integer labels; "
                           "replace it with the official file")
    if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
        raise DatasetError(f"{path}: labels outside 0..{spec.num_classes - 1}; replace it with the official file")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _read_names(path: Path, spec: CifarSpec) -> list[str]:
    if not path.is_file():
        raise DatasetError(_how(spec, f"{path} is missing"))
    d = _str_keys(load_restricted(path), path)
    names = d.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != spec.num_classes:
        raise DatasetError(f"{path}: '{spec.names_key}' is not a list of {spec.num_classes} names; "
                           "replace it with the official file")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _stamp(folder: Path, spec: CifarSpec) -> tuple:
    out = []
    for name in (*spec.train_files, spec.test_file, spec.meta_file):
        p = folder / name
        st = p.stat() if p.exists() else None
        out.append((str(p.resolve()), st.st_size if st else -1, st.st_mtime_ns if st else -1))
    return tuple(out)


@functools.lru_cache(maxsize=2)
def _read_folder(spec: CifarSpec,
                 stamp: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Read and validate one folder (cached on the files' paths, sizes and mtimes)."""
    paths = [Path(s[0]) for s in stamp]
    n_train = len(spec.train_files)
    parts = [_read_batch(p, spec) for p in paths[:n_train]]
    te_x, te_y = _read_batch(paths[n_train], spec)
    names = _read_names(paths[n_train + 1], spec)
    tr_x = np.concatenate([p[0] for p in parts])
    tr_y = np.concatenate([p[1] for p in parts])
    t = torch.from_numpy
    return t(tr_x), t(tr_y), t(np.array(te_x)), t(te_y), names


def load_cifar(spec: CifarSpec, root: Optional[Path], download: bool) -> DatasetSplits:
    folder = _find_folder(root, spec, download)
    tr_x, tr_y, te_x, te_y, names = _read_folder(spec, _stamp(folder, spec))
    # clone: the cache must not be changed through the datasets we hand out
    train, test = ImageDataset(tr_x.clone(), tr_y.clone()), ImageDataset(te_x.clone(), te_y.clone())
    split = split_record(
        "official",
        None,
        np.arange(len(train)),
        np.arange(len(test)),
        train,
        test,
        index_base=f"records of {' + '.join(spec.train_files)} and of {spec.test_file}",
    )
    info = DatasetInfo(
        name=spec.name,
        in_channels=3,
        image_size=32,
        num_classes=spec.num_classes,
        class_names=names,
        n_train=len(train),
        n_test=len(test),
        source=str(folder),
        split=split,
        augment="hflip",
    )
    return DatasetSplits(train, test, info)


def _where(spec: CifarSpec):
    return lambda: f"--data-root DIR holding {spec.folder}/ (or {spec.archive}), else {data_home()}"


@register_dataset(
    "cifar10",
    description="CIFAR-10, 10 classes of 32x32 colour images, official 50,000/10,000 split (python-pickle folder)",
    in_channels=3,
    image_size=32,
    num_classes=10,
    sizes=(50000, 10000),
    locate=_where(CIFAR_SPECS["cifar10"]),
    aliases=("cifar-10",),
)
def load_cifar10(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    """The official split; ``split_seed`` does not apply (recorded as seed None)."""
    return load_cifar(CIFAR_SPECS["cifar10"], root, download)


@register_dataset(
    "cifar100",
    description="CIFAR-100, 100 fine classes of 32x32 colour images, official 50,000/10,000 split "
                "(python-pickle folder)",
    in_channels=3,
    image_size=32,
    num_classes=100,
    sizes=(50000, 10000),
    locate=_where(CIFAR_SPECS["cifar100"]),
    aliases=("cifar-100",),
)
def load_cifar100(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    """The official split; ``split_seed`` does not apply (recorded as seed None)."""
    return load_cifar(CIFAR_SPECS["cifar100"], root, download)
