"""Event-domain threat models: L0 flips of binary event frames, their projection and attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnrobust.attacks import get_attack
from snnrobust.errors import ConfigError
from snnrobust.evaluation import ThreatModel, evaluate
from snnrobust.evaluation.threat import project_flips


def test_l0_projection_keeps_frames_binary_and_within_budget():
    gen = torch.Generator().manual_seed(0)
    z0 = (torch.rand(4, 3, 2, 5, 5, generator=gen) < 0.2).float()
    z = z0 + torch.randn(z0.shape, generator=gen)  # any real-valued candidate
    for k in (0, 1, 7, 10_000):
        p = project_flips(z, z0, k)
        assert set(p.unique().tolist()) <= {0.0, 1.0}
        flips = (p != z0).reshape(4, -1).sum(1)
        assert flips.max() <= k
        # only entries that moved at least half-way flip, the furthest first
        moved = ((z - z0).abs() >= 0.5).reshape(4, -1).sum(1)
        assert torch.equal(flips, moved.clamp(max=k))
    th = ThreatModel("l0", 7)
    p7 = project_flips(z, z0, 7)
    assert torch.equal(th.norm_of(p7 - z0), (p7 != z0).reshape(4, -1).sum(1).float())
    assert "L0 7 flipped event slots" in th.label()
    with pytest.raises(ConfigError, match="whole number"):
        ThreatModel("l0", 2.5)


class LinearOnFrames(nn.Module):
    """A fixed linear classifier of binary frames [B, T, 2, H, W] (no encoder: frames as given)."""

    def __init__(self, shape, classes=3, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(classes, int(torch.tensor(shape).prod()), generator=gen))

    def forward(self, x):
        return x.flatten(1) @ self.w.t()


def test_eventflip_beats_k_random_flips_and_other_attacks_refuse_l0():
    shape = (3, 2, 6, 6)
    model = LinearOnFrames(shape)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(64, *shape, generator=gen) < 0.15).float()
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample clean-correct by construction
    threat = ThreatModel("l0", 6)
    flip = evaluate(model, x, y, attack="eventflip", attack_options={"steps": 10}, threat=threat, progress=False)
    rand = evaluate(model, x, y, attack="noise", attack_options={"draws": 10}, threat=threat, progress=False)
    assert flip.complete and rand.complete
    r_flip, r_rand = flip.robust_accuracy.value, rand.robust_accuracy.value
    assert r_flip < r_rand - 0.2, (r_flip, r_rand)
    with pytest.raises(ConfigError, match="does not support the l0 threat model.*eventflip"):
        evaluate(model, x, y, attack="pgd", threat=threat, progress=False)
    assert get_attack("eventflip").to_dict()["loss"] == "cw"


def test_retiming_projection_keeps_count_order_and_bound():
    from snnrobust.evaluation.threat import project_retiming, retiming_shift

    gen = torch.Generator().manual_seed(2)
    z0 = (torch.rand(3, 8, 2, 4, 4, generator=gen) < 0.3).float()
    assert torch.equal(project_retiming(z0, z0, 2), z0)  # no pull: nothing moves
    assert retiming_shift(z0, z0).max() == 0
    for k in (0, 1, 3):
        z = torch.rand(z0.shape, generator=gen)  # any relaxed candidate
        p = project_retiming(z, z0, k)
        assert set(p.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(p.sum(1), z0.sum(1))  # every pixel and polarity keeps its event count
        shift = retiming_shift(p, z0)
        assert shift.max() <= k and ThreatModel("retime", k).distance(p, z0).max() <= k
        if k == 0:
            assert torch.equal(p, z0)
    # one event pulled to the end of its window; a changed count is infinitely far
    z0 = torch.zeros(1, 6, 1, 1, 1)
    z0[0, 2] = 1
    pull = torch.zeros_like(z0)
    pull[0, 4] = 1.0  # the end of the window [0, 4]; slot 5 would be out of reach
    p = project_retiming(pull, z0, 2)
    assert p[0, :, 0, 0, 0].tolist() == [0, 0, 0, 0, 1, 0]
    assert retiming_shift(torch.zeros_like(z0), z0).item() == float("inf")


def test_retime_attack_beats_random_retiming_on_a_time_sensitive_model():
    shape = (6, 2, 3, 3)
    model = LinearOnFrames(shape, seed=3)
    with torch.no_grad():  # mostly time-invariant weights: a random retiming rarely matters, a chosen one can
        w = model.w.view(-1, *shape)
        base = w.mean(1, keepdim=True)
        model.w.copy_((base + 0.3 * (w - base)).reshape(model.w.shape))
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(64, *shape, generator=gen) < 0.25).float()
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel("retime", 2)
    adv = evaluate(model, x, y, attack="retime", attack_options={"steps": 10}, threat=threat, progress=False)
    rand = evaluate(model, x, y, attack="noise", attack_options={"draws": 10}, threat=threat, progress=False)
    assert adv.complete and rand.complete
    assert adv.robust_accuracy.value < rand.robust_accuracy.value - 0.15, (adv.robust_accuracy.value,
                                                                          rand.robust_accuracy.value)


@pytest.mark.parametrize("norm,eps,attack", [("l0", 6, "eventflip"), ("retime", 2, "retime")])
def test_reliable_suite_under_event_threat_models(norm, eps, attack):
    shape = (4, 2, 3, 3)
    model = LinearOnFrames(shape, seed=5)
    gen = torch.Generator().manual_seed(6)
    x = (torch.rand(40, *shape, generator=gen) < 0.25).float()
    with torch.no_grad():
        y = model(x).argmax(1)
    r = evaluate(model, x, y, suite="reliable", budget="quick", threat=ThreatModel(norm, eps), eps_sweep=[],
                 progress=False)
    assert r.complete
    ids = [a.id for a in r.attacks]
    assert ids[0].startswith(attack + "/") and ids[-1] == "noise"
    assert any(f"{norm} threat model on event frames" in n for n in r.notes)
    # the masking diagnostics run with the threat model's own attacks; a linear model masks nothing
    by_name = {d.name: d for d in r.diagnostics}
    assert len(by_name) == 6, [d.line() for d in r.diagnostics]
    assert all(d.status == "PASS" for d in r.diagnostics), [d.line() for d in r.diagnostics]
    assert by_name["iterative-beats-single"].numbers["attacks"] == {"single": f"{attack}-1",
                                                                     "iterative": f"{attack}-10"}
    sweep = by_name["eps-to-zero"].numbers["eps"]
    assert all(e == int(e) for e in sweep) and sweep == sorted(set(sweep))
    assert sweep[-1] == (3 if norm == "retime" else 36)  # the whole window of T=4 frames; half of 72 slots
    # a cascade: each attack's robust accuracy is cumulative, the last one is the per-sample worst case
    assert r.attacks[0].n_broken > 0
    assert r.worst_case.robust_accuracy.value == r.attacks[-1].robust_accuracy.value
    assert r.threat_model.label().startswith("L0" if norm == "l0" else "retiming")


def test_event_study_full_check_on_dvs_gesture_files(tmp_path):
    # `study pooling-events --size full --check` on DVS128 Gesture in its real on-disk format (AEDAT 3.1
    # recordings, label CSVs, the trial lists): both variants build, train a step and build the
    # attacks of the three threat models
    import numpy as np

    from snnrobust.data.event_formats import write_aedat31, write_gesture_labels
    from snnrobust.data.events import make_events
    from snnrobust.studies.preflight import check_study

    root = tmp_path / "DvsGesture"
    root.mkdir()
    rng = np.random.default_rng(0)
    for user in ("user01_fluorescent", "user24_led"):
        n = 3000
        ev = make_events(np.sort(rng.integers(0, 900_000, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                         rng.integers(0, 2, n))
        write_aedat31(root / f"{user}.aedat", ev)
        write_gesture_labels(root / f"{user}_labels.csv", np.array([[1, 0, 400_000], [7, 450_000, 850_000]]))
    (root / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_led.aedat\n")
    rows = check_study("pooling-events", "full", str(tmp_path), "cpu", batch=1, log=lambda s: None)
    assert [r.label for r in rows] == ["max-pool", "avg-pool"]
    for r in rows:
        assert set(r.attacks) == {"frames-linf", "events-l0", "events-retime"} and r.epochs == 100
        assert all(v > 0 for v in r.attacks.values()) and r.estimators


class GradientBlocked(nn.Module):
    """The linear classifier with its input gradient cut: gradient attacks are blind, random points are not."""

    def __init__(self, shape):
        super().__init__()
        self.inner = LinearOnFrames(shape, seed=7)

    def forward(self, x):
        return self.inner(x).detach() + 0.0 * x.flatten(1).sum(1, keepdim=True)


def test_event_diagnostics_warn_when_the_gradient_is_blocked():
    shape = (4, 2, 3, 3)
    model = GradientBlocked(shape)
    gen = torch.Generator().manual_seed(8)
    x = (torch.rand(40, *shape, generator=gen) < 0.25).float()
    with torch.no_grad():
        y = model(x).argmax(1)
    r = evaluate(model, x, y, suite="reliable", budget="quick", threat=ThreatModel("l0", 6), eps_sweep=[],
                 progress=False)
    status = {d.name: d.status for d in r.diagnostics}
    assert status["input-gradients"] == "WARN" and status["loss-rises"] == "WARN", status
    assert status["eps-to-zero"] == "WARN", status  # half of every slot flipped at random would break it
    assert r.attacks[-1].id == "noise" and r.attacks[-1].n_broken > 0  # only the random baseline breaks any
