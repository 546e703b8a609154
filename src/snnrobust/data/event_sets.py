"""Event datasets: N-MNIST, DVS128 Gesture, CIFAR10-DVS from their native files, and
``mnist5k-events``, the embedded mnist5k seen through the saccade emulator (no download).

Each loader returns :class:`~.event_dataset.EventDataset` splits (frames [T, 2, H, W] per
sample under the binning asked with ``get_dataset(..., frames=...)``):

- ``nmnist``: ``ROOT/Train/<digit>/*.bin`` and ``ROOT/Test/<digit>/*.bin`` (the official split).
- ``dvs128-gesture``: ``ROOT`` holding ``trials_to_train.txt``, ``trials_to_test.txt``, the
  ``user*.aedat`` recordings and their ``*_labels.csv``; each labelled interval [start, end) of
  a recording is one sample, class 1..11 read as 0..10 (the official user split).
- ``cifar10-dvs``: ``ROOT/<class>/*.aedat``, 1,000 per class; no official split, so the usual
  9:1 per class by file index (the first 90 % of each class's files in index order train),
  recorded in ``info.split``.
- ``mnist5k-events``: mnist5k's split (``split_seed``) with every image emulated by
  :class:`~.saccades.SaccadeEmulator` at its defaults on a 34 x 34 sensor (N-MNIST's size),
  computed once per process (about a minute on 2 cores). An emulation, not N-MNIST.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DatasetError
from .base import DatasetInfo, DatasetSplits
from .event_dataset import EventDataset
from .event_formats import (CIFAR10DVS_HELP, DVS128_SIZE, GESTURE_HELP, NMNIST_HELP, read_aedat2_dvs128,
                            read_aedat31, read_gesture_labels, read_nmnist_bin)
from .registry import register_dataset
from .splits import indices_sha256

CIFAR10DVS_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
GESTURE_CLASSES = ["hand clap", "right hand wave", "left hand wave", "right arm clockwise",
                   "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise", "arm roll",
                   "air drums", "air guitar", "other gestures"]
NMNIST_SIZE = 34


def _need_root(root: Optional[Path], name: str, how: str) -> Path:
    if root is None:
        raise DatasetError(f"{name} is not embedded: pass --data-root FOLDER; {how}")
    if not root.is_dir():
        raise DatasetError(f"{name}: {root} is not a folder; {how}")
    return root


def _index_of(path: Path) -> int:
    """The last number in a file name (cifar10_cat_17.aedat -> 17; 00003.bin -> 3)."""
    nums = re.findall(r"\d+", path.stem)
    return int(nums[-1]) if nums else -1


def _split_info(name: str, class_names: list[str], train: EventDataset, test: EventDataset, source: str,
                split: dict) -> DatasetInfo:
    split = {**split, "n_train": len(train), "n_test": len(test),
             "train_data_sha256": train.content_sha256(), "test_data_sha256": test.content_sha256()}
    return DatasetInfo(name=name, in_channels=2, image_size=train.sensor[0], num_classes=len(class_names),
                       class_names=list(class_names), n_train=len(train), n_test=len(test), source=source,
                       split=split, augment=None)


# -- N-MNIST ---------------------------------------------------------------------------------
def _read_nmnist_part(folder: Path) -> EventDataset:
    if not folder.is_dir():
        raise DatasetError(f"N-MNIST: no folder {folder}; {NMNIST_HELP}")
    streams, labels = [], []
    for digit in range(10):
        files = sorted((folder / str(digit)).glob("*.bin"), key=_index_of)
        streams += [read_nmnist_bin(f) for f in files]
        labels += [digit] * len(files)
    if not streams:
        raise DatasetError(f"N-MNIST: no .bin files under {folder}/0..9; {NMNIST_HELP}")
    return EventDataset.from_streams(streams, labels, (NMNIST_SIZE, NMNIST_SIZE))


@register_dataset("nmnist", description="N-MNIST (Orchard et al. 2015): MNIST digits recorded by an ATIS in 3 "
                  "saccades, 34x34x2 events, official 60,000/10,000 split", in_channels=2, image_size=NMNIST_SIZE,
                  num_classes=10, sizes=(60000, 10000), locate="--data-root FOLDER with Train/ and Test/",
                  aliases=("n-mnist",), kind="events")
def load_nmnist(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    root = _need_root(root, "nmnist", NMNIST_HELP)
    train, test = _read_nmnist_part(root / "Train"), _read_nmnist_part(root / "Test")
    info = _split_info("nmnist", [str(d) for d in range(10)], train, test, f"N-MNIST .bin files in {root}",
                       {"method": "official", "seed": None, "index_base": "Train/ and Test/ files by digit, index"})
    return DatasetSplits(train, test, info)  # type: ignore[arg-type]


# -- DVS128 Gesture --------------------------------------------------------------------------
def _read_trials(root: Path, list_name: str) -> EventDataset:
    listing = root / list_name
    if not listing.is_file():
        raise DatasetError(f"DVS128 Gesture: no {listing}; {GESTURE_HELP}")
    names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    streams, labels = [], []
    for n in names:
        aedat = root / n
        csv = aedat.with_name(aedat.stem + "_labels.csv")
        events = read_aedat31(aedat)
        rows = read_gesture_labels(csv)
        lo = np.searchsorted(events["t"], rows[:, 1], side="left")
        hi = np.searchsorted(events["t"], rows[:, 2], side="left")
        for (cls, _, _), a, b in zip(rows, lo, hi):
            streams.append(events[a:b])
            labels.append(int(cls) - 1)
    if not streams:
        raise DatasetError(f"DVS128 Gesture: {listing} lists no recordings; {GESTURE_HELP}")
    return EventDataset.from_streams(streams, labels, (DVS128_SIZE, DVS128_SIZE))


@register_dataset("dvs128-gesture", description="DVS128 Gesture (Amir et al. 2017): 11 hand gestures, 128x128x2 "
                  "events, official user split", in_channels=2, image_size=DVS128_SIZE, num_classes=11,
                  sizes=(1176, 288), locate="--data-root DvsGesture/ (trials_to_train.txt, user*.aedat)",
                  aliases=("dvsgesture", "dvs-gesture"), kind="events")
def load_dvs_gesture(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    root = _need_root(root, "dvs128-gesture", GESTURE_HELP)
    if (root / "DvsGesture").is_dir() and not (root / "trials_to_train.txt").exists():
        root = root / "DvsGesture"
    train, test = _read_trials(root, "trials_to_train.txt"), _read_trials(root, "trials_to_test.txt")
    info = _split_info("dvs128-gesture", GESTURE_CLASSES, train, test, f"AEDAT 3.1 recordings in {root}",
                       {"method": "official", "seed": None,
                        "index_base": "labelled intervals of trials_to_train.txt / trials_to_test.txt in order"})
    return DatasetSplits(train, test, info)  # type: ignore[arg-type]


# -- CIFAR10-DVS -----------------------------------------------------------------------------
CIFAR10DVS_TRAIN_FRACTION = 0.9


@register_dataset("cifar10-dvs", description="CIFAR10-DVS (Li et al. 2017): CIFAR-10 images moved on a monitor, "
                  "128x128x2 events; 9:1 per class by file index", in_channels=2, image_size=DVS128_SIZE,
                  num_classes=10, sizes=(9000, 1000), locate="--data-root FOLDER with airplane/ ... truck/",
                  aliases=("cifar10dvs",), kind="events")
def load_cifar10_dvs(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    root = _need_root(root, "cifar10-dvs", CIFAR10DVS_HELP)
    parts: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    for label, cls in enumerate(CIFAR10DVS_CLASSES):
        files = sorted((root / cls).glob("*.aedat"), key=_index_of)
        if not files:
            raise DatasetError(f"CIFAR10-DVS: no .aedat files in {root / cls}; {CIFAR10DVS_HELP}")
        n_train = int(round(len(files) * CIFAR10DVS_TRAIN_FRACTION))
        for k, f in enumerate(files):
            streams, labels, ids = parts["train" if k < n_train else "test"]
            streams.append(read_aedat2_dvs128(f))
            labels.append(label)
            ids.append(label * 1_000_000 + _index_of(f))
    train = EventDataset.from_streams(parts["train"][0], parts["train"][1], (DVS128_SIZE, DVS128_SIZE))
    test = EventDataset.from_streams(parts["test"][0], parts["test"][1], (DVS128_SIZE, DVS128_SIZE))
    split = {"method": "per-class-by-index", "seed": None, "train_fraction": CIFAR10DVS_TRAIN_FRACTION,
             "index_base": "class * 1e6 + file index",
             "train_sha256": indices_sha256(np.array(parts["train"][2])),
             "test_sha256": indices_sha256(np.array(parts["test"][2]))}
    info = _split_info("cifar10-dvs", CIFAR10DVS_CLASSES, train, test, f"AEDAT 2.0 recordings in {root}", split)
    return DatasetSplits(train, test, info)  # type: ignore[arg-type]


# -- mnist5k through the saccade emulator ----------------------------------------------------
@functools.lru_cache(maxsize=2)
def _emulated_mnist5k(split_seed: int) -> tuple[EventDataset, EventDataset, dict, str]:
    from .mnist5k import load_mnist5k
    from .saccades import SaccadeEmulator

    base = load_mnist5k(None, False, split_seed)
    em = SaccadeEmulator()
    out = []
    for part, offset in ((base.train, 0), (base.test, len(base.train))):
        streams: list[np.ndarray] = []
        for lo in range(0, len(part), 500):
            x, _ = part.batch(torch.arange(lo, min(lo + 500, len(part))))
            # keyed by the position in train + test, so an image's events do not depend on batching
            streams += em.events(x[:, 0].double().numpy(), first_index=offset + lo)
        out.append(EventDataset.from_streams(streams, part.labels.numpy(), em.sensor_size((28, 28))))
    split = {**base.info.split, "emulator": {"name": "saccades", **em.to_dict()}}
    return out[0], out[1], split, f"mnist5k ({base.info.source}) through the saccade emulator"


@register_dataset("mnist5k-events", description="mnist5k emulated as N-MNIST-like events (3 saccades, 34x34x2; an "
                  "emulation, not N-MNIST; embedded)", in_channels=2, image_size=NMNIST_SIZE, num_classes=10,
                  sizes=(4000, 1000), locate="emulated from the embedded mnist5k (no files)", kind="events")
def load_mnist5k_events(root: Optional[Path], download: bool, split_seed: int) -> DatasetSplits:
    train, test, split, source = _emulated_mnist5k(split_seed)
    info = _split_info("mnist5k-events", [str(d) for d in range(10)], train, test, source, split)
    return DatasetSplits(train, test, info)  # type: ignore[arg-type]
