"""Distributed training and sharded, world-size-invariant evaluation, on this CPU with the gloo
backend: 2 processes started by torchrun against 1 plain process (tests/dist_worker.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snnrobust.errors import SnnRobustError
from snnrobust.evaluation import ThreatModel, evaluate
from snnrobust.store import ResultsStore
from snnrobust.store.journal import KIND

WORKER = Path(__file__).with_name("dist_worker.py")
sys.path.insert(0, str(WORKER.parent))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _plain(out: Path, *args: str) -> dict:
    subprocess.run([sys.executable, str(WORKER), str(out), *args], check=True, env=ENV, timeout=600)
    return json.loads((out / "rank0.json").read_text())


def _torchrun_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
            str(out), *args]


def _torchrun(out: Path, *args: str) -> list[dict]:
    subprocess.run(_torchrun_cmd(out, *args), check=True, env=ENV, timeout=600, capture_output=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun's workers live in their own process groups)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    return _plain(tmp_path_factory.mktemp("one"), "eval")


def test_sharded_reliable_evaluation_equals_one_process(one_process, tmp_path):
    ranks = _torchrun(tmp_path, "eval")
    assert [r["world"] for r in ranks] == [2, 2]
    ref = one_process
    assert 0 < ref["robust"] < 64 and sum(len(b) for _, b in ref["attacks"]) > 0  # attacks broke some, not all
    for r in ranks:
        assert r["per_sample"] == ref["per_sample"]   # every sample's outcome (which attack broke it)
        assert r["attacks"] == ref["attacks"]         # each attack broke the same samples
        assert r["diagnostics"] == ref["diagnostics"]  # and the masking checks saw the same numbers


def test_killed_run_resumes_without_recomputation_or_duplicates(one_process, tmp_path):
    journal = tmp_path / "journal.sqlite"
    out = tmp_path / "run"
    proc = subprocess.Popen(_torchrun_cmd(out, "eval", "--journal", str(journal)), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    done_at_kill = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            if journal.exists():
                try:
                    with ResultsStore(journal, readonly=True) as s:
                        done_at_kill = s.count(KIND)
                except SnnRobustError:  # caught between the file's creation and its tables'
                    pass
                if done_at_kill >= 6:
                    break
            time.sleep(0.05)
    finally:
        _kill_tree(proc)  # every process of the run, mid-evaluation
    assert done_at_kill >= 6 and not (out / "rank0.json").exists(), "the run finished before it was killed"
    time.sleep(0.5)
    with ResultsStore(journal, readonly=True) as s:
        before = s.count(KIND)
    assert before < 22 and not (out / "rank0.json").exists()  # 22 batches in all: nothing ran on after the kill
    ranks = _torchrun(out, "eval", "--journal", str(journal))
    reused = sum(r["journal"]["reused"] for r in ranks)
    written = sum(r["journal"]["written"] for r in ranks)
    with ResultsStore(journal, readonly=True) as s:
        after = s.count(KIND)
        assert s.integrity_check() == "ok"
    assert reused == before                 # every batch finished before the kill was read back ...
    assert after == before + written        # ... and only the missing ones were attacked, each once
    for r in ranks:
        assert r["per_sample"] == one_process["per_sample"] and r["attacks"] == one_process["attacks"]


def test_distributed_training_equals_one_process_with_the_same_global_batch(tmp_path):
    ref = _plain(tmp_path / "one", "train", "--train-out", str(tmp_path / "one" / "model"))
    ranks = _torchrun(tmp_path / "two", "train", "--train-out", str(tmp_path / "two" / "model"))
    moved = max(abs(v) for vs in ref["state"].values() for v in vs)
    assert moved > 0 and ref["metrics"]["test_accuracy"] > 0.1  # the model trained
    for r in ranks:
        # float tolerance: the gradient is summed in another order (per-process halves, then all-reduce)
        for k, vs in ref["state"].items():
            assert torch.allclose(torch.tensor(r["state"][k]), torch.tensor(vs), atol=1e-6, rtol=1e-5), k
        assert r["metrics"]["train_accuracy"] == ref["metrics"]["train_accuracy"]
        assert abs(r["metrics"]["train_loss"] - ref["metrics"]["train_loss"]) < 1e-5
    assert (tmp_path / "two" / "model" / "checkpoint.pt").is_file()


def test_own_attacks_give_a_sample_the_same_outcome_at_batch_size_1_and_64():
    from dist_worker import model_and_labels

    model, x, y = model_and_labels()
    threat = ThreatModel("linf", 0.02)
    for attack, opts in (("pgd", {"steps": 4, "random_start": True, "restarts": 2}), ("noise", {"draws": 4}),
                         ("rfgsm", {})):
        per = {}
        for bs in (1, 64):
            r = evaluate(model, x, y, attack=attack, attack_options=opts, threat=threat, eps_sweep=[], batch_size=bs,
                         progress=False)
            per[bs] = r.to_dict()["worst_case"]["per_sample"]
        broken = sum(1 for v in per[64] if v not in (None, "clean"))
        assert 0 < broken < 64, (attack, broken)  # the comparison is not of two trivial outcomes
        assert per[1] == per[64], attack


def test_a_study_runs_under_torchrun_and_rank_0_writes_one_report(tmp_path):
    from test_studies import RECIPE

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "snnrobust",
           "study", str(recipe), "--size", "quick", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, env=ENV, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("report: ") == 1  # rank 0 alone speaks
    assert (out / "report.html").is_file() and json.loads((out / "study.json").read_text())["evaluations"]
    with ResultsStore(out, readonly=True) as s:
        assert s.count("evaluation") == 4 and s.count("train") == 2
        assert s.count(KIND) == 0  # the journal of each finished evaluation was cleared
