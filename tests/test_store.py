"""Results store: hashing, idempotent SQLite store, concurrency, resume after a kill, CSV, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing as mp
import os
import signal
import sqlite3

import pytest

from snnrobust.errors import ConfigError, SnnRobustError
from snnrobust.store import (
    RESULTS_FILENAME,
    ResultsStore,
    cached,
    canonical_json,
    config_hash,
    file_sha256,
    headline,
)


def eval_payload(clean_k=9, robust_ks=(3, 2), n=10, worst=None, eps=8 / 255):
    """A payload following the snnrobust.evaluation/1 schema (ATTACK_API.md)."""

    def rate(k):
        return {"k": k, "n": n, "value": k / n, "ci": [max(0.0, k / n - 0.2), min(1.0, k / n + 0.2)]}

    p = {
        "schema": "snnrobust.evaluation/1",
        "data": {"dataset": "mnist5k", "split": "test", "n": n},
        "threat_model": {"norm": "linf", "eps": eps, "perturb": "pixels", "bn_mode": "eval"},
        "suite": "seed-luu2025",
        "budget": "quick",
        "clean": rate(clean_k),
        "attacks": [{"id": f"a{i}", "robust_accuracy": rate(k)} for i, k in enumerate(robust_ks)],
    }
    if worst is not None:
        p["worst_case"] = {"robust_accuracy": rate(worst), "broken_by": {"a0": 1}}
    return p


CONFIG = {"attack": {"name": "pgd", "steps": 10, "step_size": 0.01}, "eps": 0.1, "layers": (1, 1), "vote": None}


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ---------------------------------------------------------------------------------------- hashing
def test_file_sha256_streams_large_file(tmp_path):
    f = tmp_path / "ckpt.pt"
    data = os.urandom(3 * (1 << 20) + 123)  # spans several 1 MiB chunks
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ConfigError, match="no such file"):
        file_sha256(tmp_path / "missing.pt")


def test_config_hash_order_independent_and_value_sensitive():
    reordered = {"vote": None, "layers": [1, 1], "eps": 0.1, "attack": {"step_size": 0.01, "name": "pgd", "steps": 10}}
    assert config_hash(CONFIG) == config_hash(reordered)  # key order (nested too) and tuple-vs-list don't matter
    assert canonical_json(CONFIG) == (
        '{"attack":{"name":"pgd","step_size":0.01,"steps":10},"eps":0.1,"layers":[1,1],"vote":null}'
    )
    base = config_hash(CONFIG)
    variants = [
        {**CONFIG, "eps": 0.1000001},
        {**CONFIG, "eps": 0.2},
        {**CONFIG, "attack": {**CONFIG["attack"], "steps": 11}},
        {**CONFIG, "attack": {**CONFIG["attack"], "name": "fgsm"}},
        {**CONFIG, "layers": (1, 2)},
        {**CONFIG, "layers": (1, 1, 1)},
        {**CONFIG, "vote": 0},
        {**CONFIG, "extra": None},
        {**CONFIG, "attack": {**CONFIG["attack"], "steps": 10.0}},  # int vs float is a real change
    ]
    hashes = {config_hash(v) for v in variants}
    assert base not in hashes and len(hashes) == len(variants)


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"a": {"b": [1, {3, 4}]}}, "a.b[1]"),
        ({"model": {"eps": float("nan")}}, "model.eps"),
        ({"x": object()}, "x"),
        ({"m": {1: "int key"}}, "m"),
    ],
)
def test_config_hash_rejects_non_json_with_key_path(bad, where):
    with pytest.raises(ConfigError) as e:
        config_hash(bad)
    assert where in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------- store API
def test_put_get_round_trip_and_metadata(tmp_path):
    payload = eval_payload(worst=1)
    with ResultsStore(tmp_path) as store:  # a folder -> <folder>/results.sqlite
        assert store.path == tmp_path / RESULTS_FILENAME
        assert store.get("evaluation", "ck1", CONFIG) is None and not store.has("evaluation", "ck1", CONFIG)
        assert store.put("evaluation", "ck1", CONFIG, payload, label="max-pool / seed-luu2025",
                         study="pooling-tradeoff", duration_s=1.5)  # fmt: skip
        assert store.get("evaluation", "ck1", CONFIG) == payload
        assert store.has("evaluation", "ck1", dict(reversed(list(CONFIG.items()))))
        assert store.get("evaluation", "ck2", CONFIG) is None  # other checkpoint
        assert store.get("sparsity", "ck1", CONFIG) is None  # other kind
        (rec,) = store.records()
        assert (rec.kind, rec.label, rec.study, rec.duration_s) == (
            "evaluation", "max-pool / seed-luu2025", "pooling-tradeoff", 1.5)  # fmt: skip
        assert rec.config == json.loads(canonical_json(CONFIG)) and rec.config_hash == config_hash(CONFIG)
        assert rec.created.endswith("+00:00")
    conn = sqlite3.connect(tmp_path / RESULTS_FILENAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with ResultsStore(tmp_path / RESULTS_FILENAME, readonly=True) as store:  # persists across opens
        assert store.get("evaluation", "ck1", CONFIG) == payload
        with pytest.raises(ValueError, match="read-only"):
            store.put("evaluation", "ck9", CONFIG, payload)


def test_put_is_idempotent_and_replace_is_explicit(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store.put("evaluation", "ck", CONFIG, {"v": 1}, label="first") is True
        assert store.put("evaluation", "ck", {**CONFIG}, {"v": 2}, label="second") is False
        assert store.get("evaluation", "ck", CONFIG) == {"v": 1} and len(store) == 1
        assert store.put("evaluation", "ck", CONFIG, {"v": 3}, label="third", replace=True) is True
        assert store.get("evaluation", "ck", CONFIG) == {"v": 3} and len(store) == 1
        assert [r.label for r in store.records()] == ["third"]
        store.put("train", "", CONFIG, {"v": 4}, study="s2")
        assert len(store.records(kind="train")) == 1 and len(store.records(study="s2")) == 1
        assert store.delete("train", "", CONFIG) and len(store) == 1
        with pytest.raises(ConfigError, match="payload.x|x"):
            store.put("evaluation", "ck", CONFIG, {"x": {1, 2}})


def _concurrent_writer(path, worker, n, barrier):
    store = ResultsStore(path)
    barrier.wait()  # both processes start writing at the same moment
    for i in range(n):
        store.put("evaluation", f"ck{worker}", {"i": i}, {"worker": worker, "i": i}, label=f"w{worker}-{i}")
        store.put("shared", "ck", {"i": i % 5}, {"worker": worker})  # same keys from both writers
    store.close()


def test_two_processes_write_concurrently(tmp_path):
    db = tmp_path / RESULTS_FILENAME
    ResultsStore(db).close()  # created up front; the race on creation is covered below
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_concurrent_writer, args=(str(db), w, 50, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with ResultsStore(db) as store:
        assert store.count("evaluation") == 100
        assert store.count("shared") == 5  # idempotent under contention: no duplicates
        assert {(r.payload["worker"], r.payload["i"]) for r in store.records("evaluation")} == {
            (w, i) for w in (0, 1) for i in range(50)
        }
        assert store.integrity_check() == "ok"


def test_two_processes_create_the_same_new_store(tmp_path):
    db = tmp_path / "new" / RESULTS_FILENAME  # neither the folder nor the file exists yet
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_concurrent_writer, args=(str(db), w, 5, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with ResultsStore(db, readonly=True) as store:
        assert store.count("evaluation") == 10 and store.integrity_check() == "ok"


# ---------------------------------------------------------------------------------------- resume
def _study_loop(path, calls, fail_at=None, kill_at=None):
    """A toy study: 5 items through `cached`; `calls` collects which items were computed."""
    out = []
    with ResultsStore(path) as store:
        for item in range(1, 6):

            def compute(item=item):
                if item == fail_at:
                    raise RuntimeError("simulated crash")
                if item == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: a real kill -9
                calls.append(item)
                return {"item": item, "acc": item / 10, "pair": (item, item)}

            payload, was_cached = cached(store, "evaluation", f"ck{item}", {"eps": 0.1, "item": item}, compute,
                                         label=f"item {item}", study="toy")  # fmt: skip
            out.append((payload, was_cached))
    return out


def test_killed_midway_resumes_without_recomputation(tmp_path):
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        _study_loop(tmp_path, calls, fail_at=4)
    assert calls == [1, 2, 3]
    calls.clear()
    out = _study_loop(tmp_path, calls)
    assert calls == [4, 5]  # 1-3 came from the store
    assert [c for _, c in out] == [True, True, True, False, False]
    assert [p for p, _ in out] == [{"item": i, "acc": i / 10, "pair": [i, i]} for i in range(1, 6)]
    calls.clear()
    assert _study_loop(tmp_path, calls) == [(p, True) for p, _ in out] and calls == []  # a 3rd run: all cached
    with ResultsStore(tmp_path) as store:
        assert len(store) == 5 and sorted(r.label for r in store.records()) == [f"item {i}" for i in range(1, 6)]
        assert all(r.duration_s is not None and r.duration_s >= 0 for r in store.records())


def _killed_worker(path):
    _study_loop(path, [], kill_at=4)


def test_sigkilled_process_leaves_a_sound_resumable_store(tmp_path):
    p = mp.get_context("spawn").Process(target=_killed_worker, args=(str(tmp_path),))
    p.start()
    p.join(120)
    assert p.exitcode == -signal.SIGKILL
    calls: list[int] = []
    _study_loop(tmp_path, calls)
    assert calls == [4, 5]
    with ResultsStore(tmp_path) as store:
        assert len(store) == 5 and store.integrity_check() == "ok"


# ---------------------------------------------------------------------------------------- bad files
def _foreign_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
    conn.commit()
    conn.close()


def _corrupt_store(path):
    with ResultsStore(path) as store:
        for i in range(200):
            store.put("evaluation", "ck", {"i": i}, {"blob": "x" * 500})
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(path, "r+b") as f:  # garble the b-tree pages after the header page
        f.seek(4096 + 100)
        f.write(os.urandom(3 * 4096))


def _newer_store(path):
    ResultsStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE snnrobust_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p: p.write_text("name,acc\nmodel,0.9\n"), "not an snnrobust results store"),
        (_foreign_sqlite, "another program"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20), "truncated"),
        (_corrupt_store, "corrupt"),
        (_newer_store, "newer snnrobust"),
    ],
    ids=["text", "foreign-sqlite", "truncated", "corrupt", "newer-schema"],
)
def test_foreign_or_corrupt_file_is_refused_and_left_unchanged(tmp_path, make, expect):
    db = tmp_path / RESULTS_FILENAME
    make(db)
    before = sha(db)
    for readonly in (False, True):
        with pytest.raises(SnnRobustError) as e:
            ResultsStore(tmp_path, readonly=readonly)
        msg = str(e.value)
        assert expect in msg and str(db) in msg and "\n" not in msg
        assert sha(db) == before
    # Nothing written beside it either; SQLite itself may leave an empty -wal (and its -shm index)
    # after a read-only look at a WAL-mode file, which is how SQLite reads any WAL database.
    extra = set(os.listdir(tmp_path)) - {RESULTS_FILENAME, RESULTS_FILENAME + "-shm"}
    assert extra <= {RESULTS_FILENAME + "-wal"} and all((tmp_path / f).stat().st_size == 0 for f in extra)


def test_readonly_needs_an_existing_store(tmp_path):
    with pytest.raises(SnnRobustError, match="no results store"):
        ResultsStore(tmp_path / "nothing.sqlite", readonly=True)
    assert not (tmp_path / "nothing.sqlite").exists()


# ---------------------------------------------------------------------------------------- CSV + summary
def test_headline_reads_payloads_defensively():
    h = headline(eval_payload(worst=1))
    assert (h.clean, h.robust, h.robust_from, h.n) == (0.9, 0.1, "worst_case", 10)
    assert (h.suite, h.norm) == ("seed-luu2025", "linf")
    h = headline(eval_payload())  # no worst_case: min over attacks
    assert h.robust == 0.2 and h.robust_from == "min over 2 attacks" and h.robust_ci == pytest.approx((0.0, 0.4))
    h = headline({"schema": "snnrobust.evaluation/1", "clean": {"k": 3, "n": 4, "ci_low": 0.3, "ci_high": 0.9},
                  "attacks": [{"robust_accuracy": "garbage"}, 5]})  # fmt: skip
    assert h.clean == 0.75 and h.clean_ci == (0.3, 0.9) and h.robust is None and h.n == 4
    assert headline({"metrics": {"test_acc": 0.97}}).other == "test_acc=0.97"
    assert headline("not a dict").clean is None


def test_export_csv_content(tmp_path):
    with ResultsStore(tmp_path) as store:
        store.put("evaluation", "ck1", {"eps": 0.1}, eval_payload(worst=1), label="max", study="pt", duration_s=2.0)
        store.put("evaluation", "ck2", {"eps": 0.1}, eval_payload(clean_k=8, robust_ks=(5,)), label="avg", study="pt")
        store.put("train", "", {"lr": 1e-3}, {"metrics": {"test_acc": 0.97}}, label="max", study="pt")
        out = store.export_csv(tmp_path / "out" / "all.csv")
        store.export_csv(tmp_path / "eval.csv", kind="evaluation")
    rows = list(csv.DictReader(open(out, newline="", encoding="utf-8")))
    assert len(rows) == 3 and rows[0]["source"].endswith(RESULTS_FILENAME)
    by = {(r["kind"], r["label"]): r for r in rows}
    mx, av, tr = by[("evaluation", "max")], by[("evaluation", "avg")], by[("train", "max")]
    assert float(mx["clean_acc"]) == 0.9 and float(mx["robust_acc"]) == 0.1 and mx["robust_from"] == "worst_case"
    assert float(mx["robust_ci_low"]) == 0.0 and float(mx["robust_ci_high"]) == pytest.approx(0.3)
    assert (mx["suite"], mx["budget"], mx["norm"]) == ("seed-luu2025", "quick", "linf")
    assert (mx["n"], mx["duration_s"]) == ("10", "2.0")
    assert float(mx["eps"]) == 8 / 255 and mx["checkpoint_hash"] == "ck1"
    assert mx["config_hash"] == config_hash({"eps": 0.1})
    assert float(av["robust_acc"]) == 0.5 and av["robust_from"] == "min over 1 attacks" and av["duration_s"] == ""
    assert tr["clean_acc"] == "" and json.loads(tr["payload_json"]) == {"metrics": {"test_acc": 0.97}}
    assert json.loads(mx["payload_json"]) == eval_payload(worst=1)
    assert len(list(csv.DictReader(open(tmp_path / "eval.csv")))) == 2
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp")]  # temp file renamed away


# ---------------------------------------------------------------------------------------- CLI
@pytest.fixture
def cli():
    """`snnrobust ...` through cli.main.main (exit status returned, output captured by capsys)."""
    from snnrobust.cli.main import main

    return main


def _fill(folder, clean_k, robust):
    with ResultsStore(folder) as store:
        store.put("evaluation", "ck", {"eps": 0.1}, eval_payload(clean_k=clean_k, worst=robust),
                  label="max-pool / seed-luu2025", study="pooling-tradeoff")  # fmt: skip
        store.put("train", "", {"lr": 1e-3}, {"metrics": {"test_acc": clean_k / 10}}, label="max-pool")


def test_cli_results_lists_compares_and_exports(tmp_path, cli, capsys, monkeypatch):
    a, b = tmp_path / "run_a", tmp_path / "run_b"
    _fill(a, 9, 1)
    _fill(b, 8, 3)
    assert cli(["results", str(a)]) == 0
    out = capsys.readouterr().out
    for text in ("pooling-tradeoff", "max-pool / seed-luu2025", "90.0%", "10.0% [0.0, 30.0]", "seed-luu2025",
                 "quick", "linf 8/255", "test_acc=0.9", "2 results"):  # fmt: skip
        assert text in out, text

    monkeypatch.chdir(a)  # default folder: the current one
    assert cli(["results", "--kind", "train"]) == 0
    out = capsys.readouterr().out
    assert "1 result of kind train" in out and "seed-luu2025" not in out

    csv_path = tmp_path / "both.csv"
    assert cli(["results", str(a), str(b / RESULTS_FILENAME), "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "side by side" in out
    side = out.split("side by side")[1]
    line = next(ln for ln in side.splitlines() if "max-pool / seed-luu2025" in ln)
    assert "robust 10.0%" in line and "robust 30.0%" in line  # same label, both folders, one row
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 4 and {r["source"] for r in rows} == {str(a), str(b)}

    assert cli(["results", str(tmp_path), "--json"]) == 0  # parent folder: finds both one level down
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["sources"]) == 2
    ev = [r for s in doc["sources"] for r in s["records"] if r["kind"] == "evaluation"]
    assert sorted(r["headline"]["robust"] for r in ev) == [0.1, 0.3]


def test_cli_results_hides_the_batches_of_an_evaluation_in_progress(tmp_path, cli, capsys):
    from snnrobust.store.journal import KIND, BatchJournal

    a = tmp_path / "run_a"
    _fill(a, 9, 1)
    journal = BatchJournal(a, "an-evaluation-in-progress")
    journal.put("pgd/bptt", 0.1, [0, 1], {"success": [True, False]})
    journal.close()
    assert cli(["results", str(a)]) == 0
    out = capsys.readouterr().out
    assert "2 results" in out and KIND not in out  # the finished results only
    assert cli(["results", str(a), "--kind", KIND]) == 0  # asked for by name, they are listed
    assert "1 result of kind attack-batch" in capsys.readouterr().out


def test_cli_results_errors_are_one_line(tmp_path, cli, capsys):
    assert cli(["results", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no such folder" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert cli(["results", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no results.sqlite" in err and err.count("\n") == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / RESULTS_FILENAME).write_text("hello")
    assert cli(["results", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not an snnrobust results store" in err and err.count("\n") == 1
    assert (bad / RESULTS_FILENAME).read_text() == "hello"
