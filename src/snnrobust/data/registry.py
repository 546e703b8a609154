"""Dataset registry: ``get_dataset(name)`` returns train and test splits of any known dataset.

A loader is registered with :func:`register_dataset`; it is called as
``loader(root, download, split_seed) -> DatasetSplits`` and raises :class:`DatasetError`
(one line that says how to get the data) when the data is missing or malformed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ..errors import ConfigError, DatasetError, SnnRobustError
from .base import DatasetSplits
from .events import FrameSpec

Loader = Callable[[Optional[Path], bool, int], DatasetSplits]
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: what it is, its shape, and where it is looked for."""

    name: str
    loader: Loader
    description: str
    in_channels: int
    image_size: int
    num_classes: int
    sizes: tuple[int, int]  # (n_train, n_test) of the full dataset
    locate: Callable[[], str]  # describes where the data is looked for (evaluated when asked)
    aliases: tuple[str, ...] = ()
    #: "image" (uint8 images [C, H, W]) or "events" (event streams read as frames [T, 2, H, W])
    kind: str = "image"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def classes(self) -> int:
        return self.num_classes

    @property
    def where(self) -> str:
        return self.locate()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "shape": list(self.shape),
            "classes": self.num_classes,
            "n_train": self.sizes[0],
            "n_test": self.sizes[1],
            "where": self.where,
            "aliases": list(self.aliases),
            "kind": self.kind,
        }


DATASETS: dict[str, DatasetEntry] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(
    name: str,
    *,
    description: str,
    in_channels: int,
    image_size: int,
    num_classes: int,
    sizes: tuple[int, int],
    locate: Union[str, Callable[[], str]],
    aliases: tuple[str, ...] = (),
    kind: str = "image",
) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(root, download, split_seed) -> DatasetSplits`` under ``name``."""

    def deco(loader: Loader) -> Loader:
        where = locate if callable(locate) else (lambda: locate)
        DATASETS[name] = DatasetEntry(
            name, loader, description, in_channels, image_size, num_classes, tuple(sizes), where, tuple(aliases), kind
        )
        for a in (name, *aliases):
            _ALIASES[_key(a)] = name
        return loader

    return deco


def _ensure_loaded() -> None:
    from . import cifar, event_sets, fashion_mnist, mnist5k  # noqa: F401  (registration side effect)


def list_datasets() -> list[DatasetEntry]:
    """Every registered dataset, sorted by name."""
    _ensure_loaded()
    return [DATASETS[k] for k in sorted(DATASETS)]


def resolve_name(name: str) -> str:
    """The registered name for ``name`` or an alias of it; ConfigError listing names otherwise."""
    _ensure_loaded()
    if not isinstance(name, str) or _key(name) not in _ALIASES:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return _ALIASES[_key(name)]


def get_dataset(
    name: str, root: Optional[PathLike] = None, download: bool = False, split_seed: int = 0,
    frames: "FrameSpec | dict | None" = None,
) -> DatasetSplits:
    """Train and test splits of dataset ``name``.

    Args:
        name: a registered name (see :func:`list_datasets`), e.g. "mnist5k", "fashion-mnist", "cifar10".
        root: where the files are (ignored by the embedded mnist5k); None = the default places.
        download: allow a network download when the files are missing (never otherwise).
        split_seed: seed of the split for datasets without an official one (mnist5k).
        frames: event datasets only: the binning into frames (a :class:`~.events.FrameSpec` or
            its dict; default T 10 by time, binary). Image datasets refuse it.

    Images come out as uint8 [N, C, H, W], read as floats in [0, 1]; event datasets as frames
    [N, T, 2, H, W] (float counts, 0/1 when clipped at 1). Raises ConfigError for a
    bad argument, DatasetError (one line saying how to get the data) for missing/malformed data.
    """
    entry = DATASETS[resolve_name(name)]
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ConfigError(f"split_seed must be a non-negative integer, got {split_seed!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ConfigError(f"dataset root must be a path, got {root!r}")
    root_path = Path(root).expanduser() if root not in (None, "") else None
    try:
        splits = entry.loader(root_path, bool(download), split_seed)
    except SnnRobustError:
        raise
    except OSError as e:  # unreadable file, permissions, a directory where a file was expected ...
        raise DatasetError(f"could not read {entry.name}: {e.strerror or e} ({e.filename or root_path})") from None
    if entry.kind == "events":
        spec = FrameSpec() if frames is None else FrameSpec.from_dict(frames)
        splits = DatasetSplits(splits.train.with_frames(spec), splits.test.with_frames(spec),  # type: ignore[union-attr]
                               splits.info)
    elif frames is not None:
        events = ", ".join(e.name for e in list_datasets() if e.kind == "events")
        raise ConfigError(f"{entry.name} holds images, not events: frames (the 'frames' encoder) need an event "
                          f"dataset ({events})")
    _check_consistent(entry, splits)
    return splits


def _check_consistent(entry: DatasetEntry, s: DatasetSplits) -> None:
    """Every loader must return what its entry and info promise (a programming error otherwise)."""
    info = s.info
    for part in (s.train, s.test):
        if entry.kind == "events":
            if tuple(part.shape[1:]) != entry.shape:
                raise DatasetError(f"{entry.name}: frames have shape {list(part.shape)}, expected [T, {entry.shape}]")
        elif part.shape != entry.shape:
            raise DatasetError(f"{entry.name}: images have shape {list(part.shape)}, expected {list(entry.shape)}")
        if len(part) and (int(part.labels.min()) < 0 or int(part.labels.max()) >= entry.num_classes):
            raise DatasetError(f"{entry.name}: labels outside 0..{entry.num_classes - 1}")
    assert (info.n_train, info.n_test) == (len(s.train), len(s.test)), "DatasetInfo sizes disagree with splits"
    assert len(info.class_names) == info.num_classes == entry.num_classes
