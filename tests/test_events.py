"""Event streams: native file formats (round trip, bit layout, corruption) and frames."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from snnrobust.data.event_formats import (read_aedat2_dvs128, read_aedat31, read_gesture_labels, read_nmnist_bin,
                                          write_aedat2_dvs128, write_aedat31, write_gesture_labels, write_nmnist_bin)
from snnrobust.data.events import EVENT_DTYPE, FrameSpec, frame_index, make_events, to_frames
from snnrobust.errors import ConfigError, DatasetError


def random_events(n: int, size: int, t_max: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, size, n), rng.integers(0, size, n),
                       rng.integers(0, 2, n))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == EVENT_DTYPE and b.dtype == EVENT_DTYPE and all(np.array_equal(a[k], b[k]) for k in "txyp")


# -- N-MNIST .bin ------------------------------------------------------------------------------
def test_nmnist_bin_bit_layout_of_one_event(tmp_path):
    # x=33, y=5, ON, t=0x4ABCDE -> bytes 0x21 0x05 (0x80 | 0x4A) 0xBC 0xDE
    f = tmp_path / "00001.bin"
    f.write_bytes(bytes([0x21, 0x05, 0xCA, 0xBC, 0xDE, 0x00, 0x21, 0x7F, 0xFF, 0xFF]))
    ev = read_nmnist_bin(f)
    assert ev["x"].tolist() == [33, 0] and ev["y"].tolist() == [5, 33] and ev["p"].tolist() == [1, 0]
    assert ev["t"].tolist() == [0x4ABCDE, 0x7FFFFF]
    # events written out of time order come back sorted
    f.write_bytes(bytes([0x00, 0x21, 0x7F, 0xFF, 0xFF, 0x21, 0x05, 0xCA, 0xBC, 0xDE]))
    assert read_nmnist_bin(f)["t"].tolist() == [0x4ABCDE, 0x7FFFFF]


def test_nmnist_bin_round_trip_and_rejects_a_truncated_file(tmp_path):
    ev = random_events(3000, 34, 300_000)
    f = tmp_path / "a.bin"
    write_nmnist_bin(f, ev)
    assert f.stat().st_size == 5 * 3000
    assert same(read_nmnist_bin(f), ev)
    f.write_bytes(f.read_bytes()[:-2])
    with pytest.raises(DatasetError, match="not a multiple of the 5 bytes.*garrickorchard"):
        read_nmnist_bin(f)
    with pytest.raises(DatasetError, match="cannot read"):
        read_nmnist_bin(tmp_path / "missing.bin")


# -- AEDAT 3.1 -----------------------------------------------------------------------------------
def test_aedat31_round_trip_across_packets_and_timestamp_overflow(tmp_path):
    ev = random_events(5000, 128, 3_000_000)
    ev["t"][2500:] += 1 << 31  # the second half after a 31-bit timestamp overflow
    f = tmp_path / "user01_fluorescent.aedat"
    write_aedat31(f, ev, packet_size=700)
    raw = f.read_bytes()
    assert raw.startswith(b"#!AER-DAT3.1\r\n") and b"#!END-HEADER\r\n" in raw
    assert same(read_aedat31(f), ev)


def test_aedat31_bit_layout_skips_invalid_and_other_packets(tmp_path):
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"
    # a special-event packet (type 0, 8-byte events) that the reader must skip
    special = struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", 0xFFFFFFFF, 5)
    # polarity: x=100, y=7, ON, valid, t=42 (overflow 1) ; and an invalid event (bit 0 clear)
    d1 = (100 << 17) | (7 << 2) | (1 << 1) | 1
    d2 = (3 << 17) | (4 << 2)
    polarity = struct.pack("<hhiiiiii", 1, 1, 8, 4, 1, 2, 2, 1) + struct.pack("<IiIi", d1, 42, d2, 43)
    f = tmp_path / "x.aedat"
    f.write_bytes(header + special + polarity)
    ev = read_aedat31(f)
    assert ev.shape == (1,)
    assert (int(ev["x"][0]), int(ev["y"][0]), int(ev["p"][0]), int(ev["t"][0])) == (100, 7, 1, (1 << 31) | 42)


@pytest.mark.parametrize("damage", ["magic", "no-end", "truncated-packet"])
def test_aedat31_rejects_corrupted_files(tmp_path, damage):
    f = tmp_path / "user02_led.aedat"
    write_aedat31(f, random_events(100, 128, 10_000))
    raw = f.read_bytes()
    if damage == "magic":
        raw = b"#!AER-DAT2.0\r\n" + raw[14:]
    elif damage == "no-end":
        raw = raw.replace(b"#!END-HEADER\r\n", b"#!NOT-HEADER\r\n")
    else:
        raw = raw[:-5]
    f.write_bytes(raw)
    with pytest.raises(DatasetError, match="user02_led.aedat.*DVS128 Gesture"):
        read_aedat31(f)


def test_gesture_labels_round_trip_and_errors(tmp_path):
    rows = np.array([[1, 100, 2000], [11, 2500, 9000]])
    f = tmp_path / "user01_fluorescent_labels.csv"
    write_gesture_labels(f, rows)
    assert f.read_text().startswith("class,startTime_usec,endTime_usec\n")
    assert np.array_equal(read_gesture_labels(f), rows)
    f.write_text("class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(DatasetError, match="classes must be 1..11"):
        read_gesture_labels(f)
    f.write_text("a,b\n")
    with pytest.raises(DatasetError, match="header"):
        read_gesture_labels(f)


# -- AEDAT 2.0, DVS128 addresses (CIFAR10-DVS) ---------------------------------------------------
def test_aedat2_round_trip_orientation_and_non_dvs_events(tmp_path):
    ev = random_events(4000, 128, 1_000_000)
    f = tmp_path / "cifar10_cat_0.aedat"
    write_aedat2_dvs128(f, ev)
    assert same(read_aedat2_dvs128(f), ev)
    # one raw event by hand: address y=10, x=20, polarity 1 -> read as x = 127-10, y = 127-20, p = 0;
    # an event with bit 31 set (not from the DVS) is dropped
    raw = b"#!AER-DAT2.0\r\n# AEChip: DVS128\r\n" + struct.pack(">IIII", (10 << 8) | (20 << 1) | 1, 7,
                                                                  (1 << 31) | 5, 8)
    f.write_bytes(raw)
    ev1 = read_aedat2_dvs128(f)
    assert ev1.shape == (1,) and (int(ev1["x"][0]), int(ev1["y"][0]), int(ev1["p"][0]), int(ev1["t"][0])) == (
        117, 107, 0, 7)
    f.write_bytes(raw[:-3])
    with pytest.raises(DatasetError, match="not whole 8-byte events.*CIFAR10-DVS"):
        read_aedat2_dvs128(f)
    f.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not an AER-DAT2.0 file"):
        read_aedat2_dvs128(f)


# -- frames --------------------------------------------------------------------------------------
@pytest.mark.parametrize("by", ["time", "count"])
@pytest.mark.parametrize("T", [1, 3, 10])
def test_frames_conserve_the_event_count_per_polarity_and_pixel(by, T):
    ev = random_events(2345, 34, 250_000, seed=T)
    frames = to_frames(ev, (34, 34), FrameSpec(T=T, by=by, clip=None))
    assert frames.shape == (T, 2, 34, 34) and frames.sum() == 2345
    direct = np.zeros((2, 34, 34), dtype=np.int64)
    np.add.at(direct, (ev["p"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    assert np.array_equal(frames.sum(0), direct)


def test_frame_binning_by_time_and_by_count():
    t = np.array([0, 10, 20, 30, 99, 100])
    assert frame_index(t, 2, "time").tolist() == [0, 0, 0, 0, 1, 1]  # bins [0, 50), [50, 100]
    assert frame_index(t, 4, "count").tolist() == [0, 0, 1, 2, 2, 3]
    assert np.bincount(frame_index(np.arange(10), 3, "count")).tolist() == [4, 3, 3]
    assert frame_index(np.array([5, 5, 5]), 4, "time").tolist() == [0, 0, 0]


def test_frames_clip_and_errors():
    ev = make_events([0, 1, 2], [1, 1, 1], [2, 2, 2], [1, 1, 1])
    assert to_frames(ev, (4, 4), FrameSpec(T=1, clip=1)).sum() == 1
    assert to_frames(ev, (4, 4), FrameSpec(T=1, clip=None))[0, 1, 2, 1] == 3
    with pytest.raises(ConfigError, match="outside a 2x2 sensor"):
        to_frames(ev, (2, 2), FrameSpec(T=1))
    with pytest.raises(ConfigError, match="by must be"):
        FrameSpec(by="space")
    with pytest.raises(ConfigError, match="unknown key"):
        FrameSpec.from_dict({"T": 2, "bins": 3})


# -- the saccade emulator ------------------------------------------------------------------------
def _digit_like(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 12, 12))
    for i in range(n):
        r, c = rng.integers(2, 6, 2)
        imgs[i, r:r + 5, c:c + 3] = rng.uniform(0.6, 1.0)
    return imgs


def test_emulator_closed_path_balances_on_and_off_per_pixel():
    from snnrobust.data.saccades import SaccadeEmulator

    em = SaccadeEmulator(pad=3, saccade_us=20_000, dt_us=500)
    imgs = _digit_like(3)
    streams = em.events(imgs)
    H, W = em.sensor_size((12, 12))
    assert (H, W) == (18, 18)
    for ev in streams:
        assert ev.shape[0] > 20 and np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() >= 0 and ev["t"].max() < 3 * 20_000 + 500
        f = to_frames(ev, (H, W), FrameSpec(T=1, clip=None))[0]
        assert np.abs(f[1] - f[0]).max() <= 1  # back where it started: ON and OFF cancel to one threshold
    # a blank image makes no events without background noise, and about noise_hz x pixels x time with it
    assert em.events(np.zeros((1, 12, 12)))[0].shape[0] == 0
    noisy = SaccadeEmulator(pad=3, saccade_us=20_000, dt_us=500, noise_hz=50.0)
    n = noisy.events(np.zeros((1, 12, 12)))[0].shape[0]
    expected = 50.0 * 18 * 18 * (3 * 20_000 + 500) / 1e6
    assert abs(n - expected) < 5 * expected ** 0.5


def test_emulator_is_seeded_per_image_whatever_the_batch():
    from snnrobust.data.saccades import SaccadeEmulator

    em = SaccadeEmulator(saccade_us=10_000, dt_us=500, seed=7)
    imgs = _digit_like(4, seed=1)
    batch = em.events(imgs)
    alone = em.events(imgs[2:3], first_index=2)[0]
    assert same(batch[2], alone)
    assert same(em.events(imgs)[0], batch[0])
    other = SaccadeEmulator(saccade_us=10_000, dt_us=500, seed=8).events(imgs[:1])[0]
    assert not (other.shape == batch[0].shape and np.array_equal(other["t"], batch[0]["t"]))
    with pytest.raises(ConfigError, match="pixels in \\[0, 1\\]"):
        em.events(imgs * 2)


# -- EventDataset ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [FrameSpec(T=4, clip=None), FrameSpec(T=3, by="count", clip=None), FrameSpec(T=5)])
def test_event_dataset_batch_equals_per_stream_frames(spec):
    import torch

    from snnrobust.data.event_dataset import EventDataset

    streams = [random_events(n, 10, 50_000, seed=n) for n in (0, 1, 17, 300, 5)]
    ds = EventDataset.from_streams(streams, [0, 1, 2, 3, 4], (10, 10), spec)
    assert len(ds) == 5 and ds.shape == (spec.T, 2, 10, 10)
    x, y = ds.batch(torch.tensor([3, 0, 2, 4, 1]))
    assert x.shape == (5, spec.T, 2, 10, 10) and x.dtype == torch.float32 and y.tolist() == [3, 0, 2, 4, 1]
    for row, i in enumerate([3, 0, 2, 4, 1]):
        assert np.array_equal(x[row].numpy(), to_frames(streams[i], (10, 10), spec))
    sub = ds.subset([4, 3])
    assert len(sub) == 2 and sub.labels.tolist() == [4, 3] and same(sub.stream(1), streams[3])
    assert ds.subset(2).content_sha256() == EventDataset.from_streams(streams[:2], [0, 1], (10, 10)).content_sha256()
    assert ds.with_frames({"T": 2}).batch([3])[0].shape == (1, 2, 2, 10, 10)


# -- the event datasets, from files written in the real formats ---------------------------------
def _write_nmnist_folder(root, n_per=2):
    from snnrobust.data.saccades import SaccadeEmulator

    em = SaccadeEmulator(saccade_us=5_000, dt_us=500)
    for part in ("Train", "Test"):
        for d in range(10):
            (root / part / str(d)).mkdir(parents=True)
            imgs = np.zeros((n_per, 28, 28))
            imgs[:, 2 + 2 * d:5 + 2 * d, 6:20] = 1.0
            for i, ev in enumerate(em.events(imgs, first_index=100 * d)):
                write_nmnist_bin(root / part / str(d) / f"{i + 1:05d}.bin", ev)


def test_nmnist_loader_frames_and_errors(tmp_path):
    import torch

    from snnrobust.data import get_dataset

    _write_nmnist_folder(tmp_path / "nm")
    s = get_dataset("nmnist", root=tmp_path / "nm", frames={"T": 3, "by": "count", "clip": None})
    assert (len(s.train), len(s.test)) == (20, 20) and s.train.shape == (3, 2, 34, 34)
    assert s.info.in_channels == 2 and s.info.image_size == 34 and s.info.split["method"] == "official"
    x, y = s.test.batch(torch.arange(20))
    assert x.shape == (20, 3, 2, 34, 34) and y.tolist() == [d for d in range(10) for _ in range(2)]
    ev = read_nmnist_bin(tmp_path / "nm" / "Test" / "4" / "00002.bin")
    assert x[9].sum() == ev.shape[0]  # counts conserve the file's events
    with pytest.raises(DatasetError, match="not embedded: pass --data-root"):
        get_dataset("nmnist")
    with pytest.raises(ConfigError, match="holds images, not events"):
        get_dataset("mnist5k", frames={"T": 4})
    (tmp_path / "nm" / "Test" / "4" / "00002.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(DatasetError, match="00002.bin is not an N-MNIST .bin file"):
        get_dataset("nmnist", root=tmp_path / "nm")


def test_dvs_gesture_loader_cuts_recordings_by_label_rows(tmp_path):
    from snnrobust.data import get_dataset

    root = tmp_path / "DvsGesture"
    root.mkdir()
    for user, classes in (("user01_fluorescent", [1, 5, 11]), ("user24_led", [2, 3])):
        ev = random_events(4000, 128, 1_000_000, seed=len(classes))
        write_aedat31(root / f"{user}.aedat", ev, packet_size=512)
        starts = np.arange(len(classes)) * 300_000 + 1_000
        write_gesture_labels(root / f"{user}_labels.csv", np.stack([classes, starts, starts + 250_000], 1))
    (root / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_led.aedat\n")
    s = get_dataset("dvs128-gesture", root=tmp_path, frames={"T": 2})
    assert s.train.labels.tolist() == [0, 4, 10] and s.test.labels.tolist() == [1, 2]
    full = read_aedat31(root / "user01_fluorescent.aedat")
    t = full["t"]
    assert len(s.train.stream(1)) == int(((t >= 301_000) & (t < 551_000)).sum())
    assert s.train.shape == (2, 2, 128, 128)


def test_cifar10_dvs_loader_splits_nine_to_one_per_class_by_index(tmp_path):
    from snnrobust.data import get_dataset
    from snnrobust.data.event_sets import CIFAR10DVS_CLASSES

    for k, cls in enumerate(CIFAR10DVS_CLASSES):
        (tmp_path / cls).mkdir()
        for i in range(10):
            ev = random_events(30, 128, 5000, seed=k * 10 + i)
            write_aedat2_dvs128(tmp_path / cls / f"cifar10_{cls}_{i}.aedat", ev)
    s = get_dataset("cifar10-dvs", root=tmp_path)
    assert (len(s.train), len(s.test)) == (90, 10) and s.test.labels.tolist() == list(range(10))
    assert s.info.split["method"] == "per-class-by-index" and s.info.split["train_fraction"] == 0.9
    # the test sample of class 3 is file index 9
    assert same(s.test.stream(3), read_aedat2_dvs128(tmp_path / "cat" / "cifar10_cat_9.aedat"))


def test_a_frames_model_trains_and_attacks_on_event_files(tmp_path):
    import torch

    from snnrobust.data import get_dataset
    from snnrobust.evaluation import ThreatModel, evaluate
    from snnrobust.training import TrainConfig, load_checkpoint, train

    _write_nmnist_folder(tmp_path / "nm", n_per=3)
    cfg = TrainConfig.from_dict({"dataset": "nmnist", "data_root": str(tmp_path / "nm"), "epochs": 1,
                                 "batch_size": 10, "out": str(tmp_path / "run"),
                                 "model": {"name": "sew_resnet", "layers": [1, 1], "width": 4, "T": 3,
                                           "encoder": "frames", "encoder_options": {"by": "time", "clip": 1}}})
    train(cfg, progress=False)
    model, ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert model.encoder.describe()["by"] == "time" and ck["data"]["dataset"] == "nmnist"
    from snnrobust.data.events import frames_for_model

    test = get_dataset("nmnist", root=tmp_path / "nm", frames=frames_for_model(model)).test
    x, y = test.batch(torch.arange(6))
    r = evaluate(model, x, y, attack="pgd", threat=ThreatModel("linf", 0.1), progress=False)
    assert r.complete and r.clean.n == 6
    with pytest.raises(ConfigError, match="event frames \\[B, 3, 2, 34, 34\\]"):
        model(torch.zeros(2, 4, 2, 34, 34))


def test_mnist5k_events_loader_emulates_the_split_it_records(monkeypatch):
    """The registered loader on a cut-down mnist5k (the real one takes a minute): every image of
    train and test becomes the emulator's stream for its position in train + test, labels and
    split come from mnist5k, and the emulator's settings are recorded with the split."""
    import torch

    from snnrobust.data import event_sets, get_dataset, mnist5k
    from snnrobust.data.base import DatasetSplits
    from snnrobust.data.saccades import SaccadeEmulator

    full = mnist5k.load_mnist5k(None, False, 0)
    small = DatasetSplits(full.train.subset(12), full.test.subset(5), full.info)
    monkeypatch.setattr(mnist5k, "load_mnist5k", lambda root, download, seed: small)
    event_sets._emulated_mnist5k.cache_clear()
    try:
        d = get_dataset("mnist5k-events", frames={"T": 6, "by": "time", "clip": 1})
        assert (len(d.train), len(d.test)) == (12, 5)
        assert torch.equal(d.train.labels, small.train.labels) and torch.equal(d.test.labels, small.test.labels)
        x, y = d.test.batch(torch.arange(5))
        assert x.shape == (5, 6, 2, 34, 34) and set(x.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(y, small.test.labels)
        em = SaccadeEmulator()
        img = small.test.batch(torch.arange(5))[0][:, 0].double().numpy()
        expected = em.events(img, first_index=len(small.train))  # test images follow the train images
        for i in range(5):
            assert np.array_equal(d.test.stream(i), expected[i])
        assert d.info.split["emulator"]["name"] == "saccades"
        assert "emulat" in d.info.source
    finally:
        event_sets._emulated_mnist5k.cache_clear()
