"""Shared file helpers: one atomic write (same file mode for every writer), one sha256, one
eps formatter, one Wilson z, and output folders checked before any work starts."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import statistics
from pathlib import Path

import pytest
import torch

import snnrobust
from snnrobust.evaluation.metrics import Z95, wilson_interval
from snnrobust.evaluation.results import write_json_atomic
from snnrobust.evaluation.threat import ThreatModel, format_eps
from snnrobust.cli.main import main
from snnrobust.errors import ConfigError, SnnRobustError
from snnrobust.io import atomic_open, atomic_write_bytes, atomic_write_text, check_output_folder, file_sha256
from snnrobust.report import read as report_read
from snnrobust.report.writer import atomic_write as report_atomic_write
from snnrobust.store import Record, ResultsStore, write_csv
from snnrobust.store import file_sha256 as store_file_sha256
from snnrobust.store.summary import fmt_eps
from snnrobust.training import save_checkpoint


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards); returns a setter."""
    old = os.umask(0o022)
    os.umask(old)

    def set_to(mask: int) -> int:
        os.umask(mask)
        return mask

    yield set_to
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith(".tmp")]


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_failing_midway_leaves_old_file_intact(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old contents\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "w") as f:
            f.write("new, half")
            f.flush()
            raise RuntimeError("boom")
    assert target.read_text() == "old contents\n"
    assert _leftovers(tmp_path) == []
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and _leftovers(tmp_path) == []


def test_atomic_write_failing_rename_leaves_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_atomic_write_onto_a_folder_fails_cleanly(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir() and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "a", "a"):
            pass


def _write_with_every_writer(folder: Path) -> dict[str, Path]:
    """One file from each of the five writers (study.json uses atomic_write_text)."""
    folder.mkdir()
    paths = {"results": folder / "r.json", "checkpoint": folder / "c.pt", "csv": folder / "x.csv",
             "report": folder / "report.html", "study": folder / "study.json"}
    write_json_atomic({"a": 1}, paths["results"])
    save_checkpoint(paths["checkpoint"], {"model_config": {}, "model_state": {"w": torch.zeros(2)}})
    write_csv(paths["csv"], [Record(id=1, kind="train", checkpoint_hash="", config_hash="c", label="l", study="s",
                                    config={}, payload={}, created="2026-01-01", duration_s=0.0)])
    report_atomic_write(paths["report"], b"<html></html>")
    atomic_write_text(paths["study"], "{}")
    return paths


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_every_writer_gives_the_same_mode_respecting_umask(tmp_path, umask, mask):
    umask(mask)
    paths = _write_with_every_writer(tmp_path / "out")
    modes = {name: oct(_mode(p)) for name, p in paths.items()}
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes  # 0o644 with the usual umask 022
    assert _leftovers(tmp_path / "out") == []


def test_writers_keep_the_old_file_when_serialising_fails(tmp_path):
    ck = tmp_path / "c.pt"
    save_checkpoint(ck, {"model_config": {}, "model_state": {}})
    before = ck.read_bytes()
    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot save this")

    with pytest.raises(RuntimeError, match="cannot save"):  # raised half-way through torch.save
        save_checkpoint(ck, {"model_config": {}, "model_state": {"w": torch.zeros(3)}, "bad": Unsaveable()})
    assert ck.read_bytes() == before

    out = tmp_path / "x.csv"
    out.write_text("old\n")

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("record unreadable")

    with pytest.raises(RuntimeError):
        write_csv(out, [Broken()])
    assert out.read_text() == "old\n" and _leftovers(tmp_path) == []


def test_no_other_module_renames_files_into_place():
    """The atomic-write logic exists once: no module but io.py (and the dataset downloader,
    which renames whole extracted folders) creates temp files or renames over a target."""
    root = Path(snnrobust.__file__).parent
    allowed = {root / "io.py", root / "data" / "download.py"}
    pattern = re.compile(r"os\.replace\(|os\.rename\(|tempfile\.mkstemp\(|tmp\.replace\(")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p not in allowed and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# ----------------------------------------------------------------------------- sha256
def test_file_sha256_is_one_function(tmp_path):
    f = tmp_path / "w.pt"
    data = os.urandom(3 << 20)  # > one 1 MiB chunk
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()
    assert store_file_sha256 is file_sha256
    with pytest.raises(ConfigError, match="no such file"):
        file_sha256(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="folder"):
        file_sha256(tmp_path)


# ----------------------------------------------------------------------------- eps and z
@pytest.mark.parametrize("eps, full, short", [
    (8 / 255, "8/255 (0.0314)", "8/255"), (0.5, "0.5", "0.5"), (1.0, "1", "1"), (0.0, "0", "0"),
    (0.123456, "0.1235", "0.1235"), (None, "?", "-"),
])
def test_one_eps_formatter(eps, full, short):
    assert format_eps(eps) == full
    assert report_read.format_eps(eps) == full  # the report's R.format_eps is the same function
    assert fmt_eps(eps) == short  # results tables: narrow column, "-" when unknown
    if eps is not None:
        assert ThreatModel(eps=eps).label().startswith(f"Linf eps={full} on")


def test_one_wilson_z():
    assert Z95 == pytest.approx(statistics.NormalDist().inv_cdf(0.975), abs=1e-12)
    assert report_read.Z95 is Z95
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(Z95 ** 2 / (10 + Z95 ** 2))
    m = report_read.mean(0.5, 0.1, 30)  # the report's mean ± z·SE uses the same z
    assert m.hi - m.value == pytest.approx(Z95 * 0.1)


# ----------------------------------------------------------------------------- output folders
def test_check_output_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="existing file"):
        check_output_folder(f)
    with pytest.raises(ConfigError, match="is a file"):
        check_output_folder(f / "sub" / "deeper", "--out")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created by the check
    assert check_output_folder(tmp_path) == tmp_path


@pytest.mark.parametrize("argv", [
    ["study", "pooling-tradeoff", "--out", "{file}"],
    ["demo", "--out", "{file}"],
    ["study", "pooling-tradeoff", "--out", "{file}/sub"],
])
def test_study_and_demo_out_that_is_a_file_is_one_line_error(tmp_path, capsys, argv):
    f = tmp_path / "taken"
    f.write_text("keep me")
    rc = main([a.format(file=f) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: --out") and "\n" not in err
    assert "Traceback" not in err and f.read_text() == "keep me"


def test_results_csv_in_a_file_is_one_line_error(tmp_path, capsys):
    with ResultsStore(tmp_path / "study") as store:
        store.put("train", "", {"lr": 1e-3}, {"metrics": {"test_acc": 0.9}}, label="m")
    f = tmp_path / "taken"
    f.write_text("keep me")
    for target in (f / "x.csv", tmp_path):
        rc = main(["results", str(tmp_path / "study"), "--csv", str(target)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("error:") and "\n" not in err, err
    assert f.read_text() == "keep me"
    assert main(["results", str(tmp_path / "study"), "--csv", str(tmp_path / "ok.csv")]) == 0
    assert (tmp_path / "ok.csv").read_text().startswith("source,")


def test_results_json_nan_refused_without_touching_old(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic({"old": 1}, p)
    with pytest.raises(ValueError):
        write_json_atomic({"new": [1.0, math.nan]}, p)
    assert json.loads(p.read_text()) == {"old": 1} and _leftovers(tmp_path) == []
    with pytest.raises(SnnRobustError, match="does not exist"):
        write_json_atomic({}, tmp_path / "missing" / "r.json")
