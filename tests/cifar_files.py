"""CIFAR files in their real on-disk format (python-pickle batches, as the official
tarballs hold them), written by tests: by pickle, and by a hand-made Python-2 pickle like the
official files."""

from __future__ import annotations

import pickle
import struct

import numpy as np

def _s(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _i(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def _py2(o) -> bytes:
    if isinstance(o, str):
        return _s(o.encode("latin1"))
    if isinstance(o, int):
        return _i(o)
    if isinstance(o, list):
        return b"](" + b"".join(_py2(x) for x in o) + b"e"
    if isinstance(o, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in o.items()) + b"u"
    if isinstance(o, np.ndarray):  # what numpy 1.x under Python 2 wrote for a uint8 array
        shape = b"(" + b"".join(_i(d) for d in o.shape) + b"t"
        dtype = b"cnumpy\ndtype\n" + _s(b"u1") + b"K\x00K\x01\x87R(K\x03" + _s(b"|")
        dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _s(b"b") + b"\x87R(K\x01"
            + shape + dtype + b"\x89" + _s(o.tobytes()) + b"tb"
        )
    raise TypeError(type(o))


def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle wrote the official CIFAR files."""
    return b"\x80\x02" + _py2(obj) + b"."


def cifar_batch(n, num_classes, label_key, seed):
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"batch {seed}",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def dump(path, obj, style):
    if style == "py2":
        path.write_bytes(py2_pickle(obj))
    elif style == "bytes-keys":  # keys and names as bytes, as encoding="bytes" readers see them
        conv = lambda v: [x.encode() if isinstance(x, str) else x for x in v] if isinstance(v, list) else v  # noqa: E731
        path.write_bytes(pickle.dumps({k.encode(): conv(v) for k, v in obj.items()}, protocol=2))
    else:
        path.write_bytes(pickle.dumps(obj, protocol=int(style)))


def make_cifar10(folder, style="py2", n=4):
    folder.mkdir(parents=True)
    batches = [cifar_batch(n, 10, "labels", i) for i in range(6)]
    for i in range(5):
        dump(folder / f"data_batch_{i + 1}", batches[i], style)
    dump(folder / "test_batch", batches[5], style)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": n, "num_vis": 3072}, style)
    return batches


def make_cifar100(folder, style="py2"):
    folder.mkdir(parents=True)
    tr, te = cifar_batch(7, 100, "fine_labels", 0), cifar_batch(3, 100, "fine_labels", 1)
    for b in (tr, te):
        b["coarse_labels"] = [v // 5 for v in b["fine_labels"]]
    dump(folder / "train", tr, style)
    dump(folder / "test", te, style)
    dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20}, style)
    return tr, te
