"""Training-time defenses (snnrobust.defenses): SR's finite difference against a hand-computed
L1 norm, adversarial training against plain training under the same attack, RAT's
orthogonality, the model's state after crafting, config errors, checkpoint, eval and resume."""

import copy

import pytest
import torch
from torch import nn

from snnrobust.attacks import get_attack
from snnrobust.cli.main import main
from snnrobust.defenses import get_defense, resolve_defense
from snnrobust.defenses.adversarial import random_search
from snnrobust.defenses.linearity import linearity_gaps
from snnrobust.defenses.rat import orthogonal_retraction, orthogonality_penalty
from snnrobust.defenses.sr import sr_difference
from snnrobust.errors import CheckpointError, ConfigError
from snnrobust.evaluation import ThreatModel, Victim
from snnrobust.training import TrainConfig, read_checkpoint, train
from snnrobust.training.trainer import train_step

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"name": "sew_resnet", "layers": [1, 1], "width": 4, "T": 2, "encoder": "phase", "stem_pool": True}


def cfg(tmp_path, **kw):
    base = dict(model=dict(TINY), dataset="mnist5k", epochs=2, batch_size=50, max_train_samples=100,
                eval_batch_size=500, out=str(tmp_path / "run"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------------------- SR
def test_sr_finite_difference_is_the_l1_norm_of_the_input_gradient_on_a_linear_model():
    torch.manual_seed(0)
    D, K, B = 16, 5, 8
    lin = nn.Linear(D, K)
    with torch.no_grad():
        lin.weight.mul_(0.2)  # small weights: h * ||w_y - w_o||_1 << 1, the O(h) error is tiny
    model = nn.Sequential(nn.Flatten(), lin)
    x = 0.3 + 0.4 * torch.rand(B, 1, 4, 4)  # inside [0, 1]: no clamping at the bounds
    y = torch.arange(B) % K
    diff, logits = sr_difference(model, x, y, h=0.01, bounds=(0.0, 1.0))
    # by hand: f = sigmoid(z_y - z_o), o the largest other logit; grad f = s (1 - s) (w_y - w_o)
    z = x.flatten(1) @ lin.weight.t() + lin.bias
    o = z.clone().scatter(1, y[:, None], -1e9).argmax(1)
    s = torch.sigmoid(z.gather(1, y[:, None]).squeeze(1) - z.gather(1, o[:, None]).squeeze(1))
    w = lin.weight.detach()
    grad_f = (s * (1 - s))[:, None] * (w[y] - w[o])
    l1 = grad_f.abs().sum(1)
    assert torch.allclose(diff.detach() ** 2, l1 ** 2, rtol=1e-2), (diff ** 2, l1 ** 2)
    # and it is not the squared L2 norm (what a normalized-gradient step would estimate)
    assert (diff.detach() ** 2 > 2 * grad_f.pow(2).sum(1)).all()
    # the defense's loss is CE + lambda * mean of the squared difference
    sr = get_defense("sr", **{"lambda": 0.5})
    loss, _ = sr.loss(model, x, y)
    ce = nn.functional.cross_entropy(logits.detach(), y)
    assert float(loss.detach()) == pytest.approx(float(ce + 0.5 * (diff.detach() ** 2).mean()), rel=1e-4)


def test_sr_perturbed_pass_leaves_batchnorm_statistics_as_one_batch(tiny_sew):
    model = tiny_sew().train()
    ref = copy.deepcopy(model)
    x, y = torch.rand(6, 1, 12, 12), torch.arange(6) % 10
    ref(x)  # one train-mode pass: what the statistics should hold afterwards
    get_defense("sr").loss(model, x, y)
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


# ---------------------------------------------------------------------------------------- AT
def _toy(n, seed):
    """Two classes on 8x8 images: pixel 0 carries a robust signal (+-0.25, beyond eps 0.1),
    the other 63 a weak one (+-0.06 each, undone by eps 0.1) that together dominate plain
    training's weights."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    s = (2 * y - 1).float()[:, None]
    x = 0.5 + 0.06 * s + 0.05 * (2 * torch.rand(n, 64, generator=g) - 1)
    x[:, 0] = 0.5 + 0.25 * s[:, 0]
    return x.clamp(0, 1).view(n, 1, 8, 8), y


class _Centered(nn.Module):
    """Logistic regression on the image minus 0.5: logits [B, 2] from images [B, 1, 8, 8]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1) - 0.5)


def _robust_accuracy(model, x, y, eps=0.1):
    victim = Victim(model.eval(), threat=ThreatModel(norm="linf", eps=eps))
    return get_attack("pgd", steps=20, seed=1).run(victim, victim.start(x), y).robust_accuracy


def test_pgd_adversarial_training_raises_robust_accuracy_over_plain_training():
    torch.manual_seed(0)
    init = _Centered()
    xtr, ytr = _toy(256, 1)
    xte, yte = _toy(200, 2)
    results = {}
    for name in ("plain", "pgd-at"):
        model = copy.deepcopy(init)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        defense = None if name == "plain" else get_defense("pgd-at", eps=0.1, steps=5)
        if defense is not None:
            defense.start_epoch(0)
        for _ in range(20):  # the same steps from the same init; only the training batch differs
            model.train()
            train_step(model, opt, scaler, xtr, ytr, use_amp=False, defense=defense)
        with torch.no_grad():
            clean = (model.eval()(xte).argmax(1) == yte).float().mean().item()
        results[name] = (clean, _robust_accuracy(model, xte, yte))
    assert results["plain"][0] > 0.95 and results["pgd-at"][0] > 0.95, results  # both learned the task
    assert results["plain"][1] < 0.3, results          # plain training leans on the fragile pixels
    assert results["pgd-at"][1] > results["plain"][1] + 0.5, results


def test_random_search_after_pgd_keeps_only_moves_that_raise_the_loss_and_stays_in_the_ball():
    torch.manual_seed(0)
    model = _Centered().eval()
    x, y = _toy(64, 3)
    victim = Victim(model, threat=ThreatModel(norm="linf", eps=0.1))
    start = victim.project(x + 0.05 * (2 * torch.rand(x.shape) - 1), x)
    z, kept = random_search(victim, x, start, y, queries=30, window=0.1, gen=torch.Generator().manual_seed(1))
    assert (z - x).abs().max() <= 0.1 + 1e-6 and z.min() >= 0 and z.max() <= 1
    l0, l1 = victim.loss(start, y), victim.loss(z, y)
    assert (l1 >= l0).all() and (l1 > l0 + 1e-3).float().mean() > 0.5 and kept > 1
    moved = (z != start).flatten(1).any(1)
    # a sample whose every move was rejected is returned exactly as it came
    assert torch.equal(z[~moved], start[~moved])
    again, _ = random_search(victim, x, start, y, queries=30, window=0.1, gen=torch.Generator().manual_seed(1))
    assert torch.equal(z, again)  # the draws come from the defense's generator
    # as a pgd-at option after a short PGD step (a full one already reaches a linear model's
    # best corner): the crafted batch's loss is at least PGD's, and the stats count kept moves
    plain, searched = (get_defense("pgd-at", eps=0.1, steps=1, step_size=0.01, queries=q) for q in (0, 20))
    for d in (plain, searched):
        d.start_epoch(4)
    lp, ls = victim.loss(plain.inputs(model, x, y), y), victim.loss(searched.inputs(model, x, y), y)
    assert (ls >= lp - 1e-6).all() and ls.mean() > lp.mean()
    assert searched.epoch_stats(model)["query_rises"] > 0 and "query_rises" not in plain.epoch_stats(model)


def _gaps_by_hand(model, x, y, eps, draws, seed):
    """The gap |l(x + d) - l(x) - d . grad l(x)| written out for each random vertex d, in float64."""
    gen = torch.Generator().manual_seed(seed)
    xx = x.clone().requires_grad_(True)
    l0 = nn.functional.cross_entropy(model(xx), y, reduction="none")
    (g,) = torch.autograd.grad(l0.sum(), xx)
    out = []
    for _ in range(draws):
        d = (x + eps * (torch.randint(0, 2, x.shape, generator=gen).to(x.dtype) * 2 - 1)).clamp(0, 1) - x
        l1 = nn.functional.cross_entropy(model(x + d), y, reduction="none")
        out.append((l1 - l0 - (d * g).flatten(1).sum(1)).abs())
    return torch.stack(out, 1).detach()


def test_linearity_gap_is_the_second_order_remainder_and_its_weight_gradient_includes_the_input_gradient():
    torch.manual_seed(0)
    model = _Centered().double()
    x, y = _toy(16, 4)
    x = x.double()
    gaps = linearity_gaps(model, x, y, 0.1, 3, (0.0, 1.0), torch.Generator().manual_seed(7))
    assert gaps.shape == (16, 3)
    assert torch.allclose(gaps.detach(), _gaps_by_hand(model, x, y, 0.1, 3, 7))
    # a remainder of second order: halving eps quarters it (the loss is smooth in x here)
    x_in = 0.3 + 0.4 * torch.rand(16, 1, 8, 8, dtype=torch.float64)  # no clamping at the bounds
    big = linearity_gaps(model, x_in, y, 0.02, 2, (0.0, 1.0), torch.Generator().manual_seed(1)).detach()
    small = linearity_gaps(model, x_in, y, 0.01, 2, (0.0, 1.0), torch.Generator().manual_seed(1)).detach()
    assert torch.allclose(small * 4, big, rtol=0.05)
    # the penalty's weight gradient (autograd through grad_x l, create_graph) equals finite differences
    w = model.fc.weight
    def term():
        return linearity_gaps(model, x, y, 0.1, 2, (0.0, 1.0), torch.Generator().manual_seed(2)).mean()

    (gw,) = torch.autograd.grad(term(), w)
    for i, j in ((0, 0), (1, 5), (0, 33)):
        vals = []
        for s in (1, -1):
            with torch.no_grad():
                w[i, j] += s * 1e-6
            vals.append(float(term().detach()))
            with torch.no_grad():
                w[i, j] -= s * 1e-6
        assert float(gw[i, j]) == pytest.approx((vals[0] - vals[1]) / 2e-6, rel=1e-4, abs=1e-8)


def test_pgd_at_linearity_adds_its_weight_times_the_mean_gap_and_records_it(tiny_sew):
    torch.manual_seed(0)
    model = tiny_sew().train()
    x, y = torch.rand(6, 1, 12, 12), torch.arange(6) % 10
    ref = copy.deepcopy(model)  # crafting leaves the model as it was (tested below)
    plain, lin = get_defense("pgd-at", eps=0.1, steps=2), get_defense("pgd-at", eps=0.1, steps=2, linearity=0.5,
                                                                       linearity_draws=2)
    for d in (plain, lin):
        d.start_epoch(3)
    z = plain.inputs(model, x, y)
    assert torch.equal(lin.inputs(model, x, y), z)  # the option leaves crafting alone
    ref(z)  # the statistics after exactly one train-mode pass on the crafted batch
    loss, logits = lin.loss(model, z, y)
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k  # the clean and vertex passes leave BatchNorm's statistics alone
    gap = lin.epoch_stats(model)["linearity_gap"]
    ce = nn.functional.cross_entropy(logits.detach(), y)
    assert gap > 0 and float(loss.detach()) == pytest.approx(float(ce) + 0.5 * gap, rel=1e-5)
    loss.backward()  # the double backward runs through the spiking model
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # without the option the loss is plain CE on the crafted batch
    base, _ = plain.loss(ref, z, y)
    assert "linearity_gap" not in plain.epoch_stats(ref) and float(base.detach()) == pytest.approx(float(ce), rel=1e-5)


def test_crafting_restores_train_mode_and_leaves_batchnorm_statistics_alone(tiny_sew):
    model = tiny_sew().train()
    before = copy.deepcopy(model.state_dict())
    x, y = torch.rand(4, 1, 12, 12), torch.arange(4)
    d = get_defense("pgd-at", eps=0.1, steps=2)
    d.start_epoch(5)
    xa = d.inputs(model, x, y)
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert (xa - x).abs().max() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    assert (xa - x).abs().max() > 0.05  # it did move
    # the random start is seeded per epoch: the same epoch seed gives the same batch
    d.start_epoch(5)
    assert torch.equal(d.inputs(model, x, y), xa)


def test_crafting_with_batch_statistics_attacks_the_train_mode_model_and_changes_nothing(tiny_sew):
    """bn_mode train crafts against the function the training step then evaluates (BatchNorm
    normalizing by the batch), not the eval-mode one; the model comes back exactly as it was."""
    model = tiny_sew(threshold=0.3, encoder="direct").train()
    before = copy.deepcopy(model.state_dict())
    x, y = torch.rand(6, 1, 12, 12), torch.arange(6)
    crafted = {}
    for mode in ("eval", "train"):
        d = get_defense("pgd-at", eps=0.1, steps=3, bn_mode=mode)
        d.start_epoch(2)
        crafted[mode] = d.inputs(model, x, y)
        assert all(m.training for m in model.modules())
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), (mode, k)
    assert not torch.equal(crafted["eval"], crafted["train"])

    def train_mode_loss(z):
        from snnrobust.defenses.base import frozen_bn_stats

        with torch.no_grad(), frozen_bn_stats(model):
            return float(nn.functional.cross_entropy(model(z), y))

    # against the train-mode function the train-mode crafting is the stronger attack
    assert train_mode_loss(crafted["train"]) > train_mode_loss(crafted["eval"])
    assert "bn_mode train" in get_defense("pgd-at", bn_mode="train").describe()
    with pytest.raises(ConfigError, match="bn_mode"):
        get_defense("pgd-at", bn_mode="batch")


def test_crafting_uses_eot_for_poisson_input_and_the_estimator_chosen(tiny_sew):
    model = tiny_sew(encoder="poisson").train()
    x, y = torch.rand(3, 1, 12, 12), torch.arange(3)
    d = get_defense("fast-at", eps=0.05, estimator="bptt:triangle:0.5")
    d.inputs(model, x, y)
    v = d.victim(model)
    assert v.eot == 10 and v.gradient_images == 10 * 3  # one FGSM gradient = 10 EOT passes
    assert v.estimator.spec() == "bptt:triangle:0.5"
    d2 = get_defense("fast-at", eps=0.05, eot=2)
    d2.inputs(model, x, y)
    assert d2.victim(model).gradient_images == 2 * 3


def test_several_estimators_are_taken_in_turn_and_the_turn_restarts_each_epoch(tiny_sew):
    model = tiny_sew().train()
    x, y = torch.rand(3, 1, 12, 12), torch.arange(3)
    specs = ["bptt", "rga", "bptt:triangle:0.5"]
    d = get_defense("pgd-at", eps=0.1, steps=2, estimator=specs)
    assert d.estimators == specs
    assert "bptt / rga / bptt:triangle:0.5 in turn" in d.describe()

    def crafted_alone(spec, batch):  # batch number `batch` of an epoch crafted through `spec` only
        alone = get_defense("pgd-at", eps=0.1, steps=2, estimator=spec)
        alone.start_epoch(7)
        for _ in range(batch):
            alone.inputs(model, x, y)  # the same random-start draws as the batches before
        return alone.inputs(model, x, y)

    for _ in range(2):  # two epochs: the turn restarts at the first estimator
        d.start_epoch(7)
        turns = [d.inputs(model, x, y) for _ in range(4)]
        for batch, got in enumerate(turns):
            assert torch.equal(got, crafted_alone(specs[batch % 3], batch)), batch
    # the estimators really differ here, so the equalities above say which one each batch used
    assert not torch.equal(crafted_alone("bptt", 1), crafted_alone("rga", 1))
    assert not torch.equal(crafted_alone("bptt", 2), crafted_alone("bptt:triangle:0.5", 2))
    assert get_defense("pgd-at", estimator=["rga"]).settings["estimator"] == "rga"  # a list of one is that spec


# ---------------------------------------------------------------------------------------- RAT
def test_rat_regularizer_is_zero_for_orthogonal_weights_and_positive_otherwise():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Linear(6, 3), nn.Linear(3, 5))
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(18, 4))       # conv: 4 orthonormal rows of length 18
        model[0].weight.copy_(q.t().reshape(4, 2, 3, 3))
        q, _ = torch.linalg.qr(torch.randn(6, 3))        # wide linear: orthonormal rows
        model[1].weight.copy_(q.t())
        q, _ = torch.linalg.qr(torch.randn(5, 3))        # tall linear: orthonormal columns
        model[2].weight.copy_(q)
    assert float(orthogonality_penalty(model).detach()) < 1e-10
    orth = copy.deepcopy(model.state_dict())
    orthogonal_retraction(model, 0.004)  # an orthogonal weight is the retraction's fixed point
    for k, v in model.state_dict().items():
        assert torch.allclose(v, orth[k], atol=1e-6), k
    with torch.no_grad():
        model[1].weight.mul_(1.5)
    p = float(orthogonality_penalty(model).detach())
    assert p > 0.1
    for _ in range(50):
        orthogonal_retraction(model, 0.05)
    assert float(orthogonality_penalty(model).detach()) < 0.01 * p  # the retraction drives it back to 0


# ---------------------------------------------------------------------------------------- config, checkpoint, CLI
@pytest.mark.parametrize("spec, match", [
    ({"name": "sr", "lamda": 1}, "has no option"),
    ({"name": "nope"}, "unknown defense"),
    ({"name": "pgd-at", "eps": 3}, "'eps' must be"),
    ({"name": "pgd-at", "steps": 0}, "'steps' must be"),
    ({"name": "fast-at", "estimator": "wobble"}, "estimator"),
    ({"name": "pgd-at", "estimator": []}, "empty list"),
    ({"name": "pgd-at", "estimator": ["bptt", "source-ann"]}, "source-ann"),
    ({"name": "rat", "beta": -1}, "'beta' must be"),
    ({"name": "pgd-at", "queries": -1}, "'queries' must be"),
    ({"name": "pgd-at", "norm": "l2", "eps": 1.0, "queries": 4}, "'queries' must be 0 under norm l2"),
    ({"name": "pgd-at", "queries": 4, "query_window": 0}, "'query_window' must be"),
    ({"name": "pgd-at", "linearity": -1}, "'linearity' must be"),
    ({"name": "pgd-at", "linearity": 1, "linearity_draws": 0}, "'linearity_draws' must be"),
    ({"name": "pgd-at", "norm": "l2", "eps": 1.0, "linearity": 1}, "'linearity' must be 0 under norm l2"),
    (7, "must be a defense name"),
])
def test_bad_defense_settings_are_one_line_errors(tmp_path, spec, match):
    with pytest.raises(ConfigError, match=match) as e:
        cfg(tmp_path, defense=spec)
    assert "\n" not in str(e.value) and "config 'defense'" in str(e.value)


def test_cli_defense_errors_are_one_line(tmp_path, capsys):
    base = ["train", "--model", "sew_resnet", "-m", "layers=[1,1]", "-m", "width=4", "--out", str(tmp_path / "o")]
    for extra, match in ((["-d", "lambda=1"], "needs a defense"), (["--defense", "sr", "-d", "lamda=1"], "lamda"),
                         (["--defense", "fast-at", "-d", "eps=abc"], "'eps' must be")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and match in err, err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_defense_is_recorded_shown_by_eval_and_resume_with_another_is_refused(tmp_path, capsys):
    out = tmp_path / "fa"
    argv = ["train", "--model", "sew_resnet", "-m", "layers=[1,1]", "-m", "width=4", "-m", "T=2", "--epochs", "1",
            "--max-train-samples", "50", "--out", str(out), "--defense", "fast-at", "-d", "eps=8/255"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "defense fast-at: " in text and "x plain BPTT" in text  # the per-epoch cost line
    ck = read_checkpoint(out / "checkpoint.pt")
    assert ck["train_config"]["defense"] == {"name": "fast-at", "eps": 8 / 255, "step_size": 1.25 * 8 / 255,
                                             "norm": "linf", "estimator": "bptt", "eot": None,
                                                 "bn_mode": "eval"}
    assert ck["metrics"][0]["plain_step_cost_seconds"] > 0
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    shown = capsys.readouterr().out
    assert "defense: fast-at (FGSM with a random start, Wong et al. 2020): eps 8/255" in shown
    c = TrainConfig.from_dict({**ck["train_config"], "epochs": 2, "defense": {"name": "fast-at", "eps": 0.1}})
    with pytest.raises(CheckpointError, match="defense"):
        train(c, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="defense"):
        train(TrainConfig.from_dict({**ck["train_config"], "epochs": 2, "defense": None}), resume=True, progress=False)
    # a checkpoint without a defense says so
    plain = tmp_path / "plain"
    assert main(argv[:-4] + ["--out", str(plain), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(plain / "checkpoint.pt")]) == 0
    assert "defense: none (plain BPTT)" in capsys.readouterr().out


def test_defended_resume_equals_uninterrupted(tmp_path):
    d = {"name": "pgd-at", "eps": 0.1, "steps": 2}
    full = train(cfg(tmp_path, out=str(tmp_path / "full"), defense=d), progress=False)

    class Interrupt(Exception):
        pass

    def stop(epoch, metrics):
        raise Interrupt

    part = cfg(tmp_path, out=str(tmp_path / "part"), defense=d)
    with pytest.raises(Interrupt):
        train(part, progress=False, on_epoch_end=stop)
    resumed = train(part, resume=True, progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.parametrize("defense", ["rat", "sr"])
def test_ann_method_trains_with_a_defense(tmp_path, defense):
    c = cfg(tmp_path, method="ann", epochs=1, defense=defense)
    assert resolve_defense(c.defense) == c.defense  # resolving is idempotent (resume compares them)
    res = train(c, progress=False)
    ck = read_checkpoint(res.checkpoint)
    assert ck["model_config"]["spiking"] is False and ck["train_config"]["defense"]["name"] == defense
    key = "orthogonality" if defense == "rat" else "sr_term"
    assert ck["metrics"][0][key] >= 0


def test_a_run_stored_before_an_option_existed_resumes_as_the_same_run():
    from snnrobust.training.trainer import _same_run

    old = {"epochs": 2, "defense": {"name": "pgd-at", "eps": 0.1, "steps": 2, "step_size": 0.125, "random_start": True,
                                    "norm": "linf", "estimator": "bptt", "eot": None}}  # before bn_mode
    new = {"epochs": 2, "defense": resolve_defense({"name": "pgd-at", "eps": 0.1, "steps": 2})}
    assert _same_run(old, new) == []
    assert _same_run(old, {**new, "defense": {**new["defense"], "bn_mode": "train"}}) == ["defense"]


def test_description_shows_only_pixel_options_as_fractions_of_255():
    """eps 8/255 reads as a pixel budget; a penalty weight of 0.6 is not 153/255."""
    from snnrobust.defenses import describe_defense

    text = describe_defense({"name": "pgd-at", "eps": 8 / 255, "linearity": 0.6}, "bptt")
    assert "eps 8/255 (0.0314)" in text and "linearity 0.6," in text and "153/255" not in text
