"""Gradient analysis: per-op sparsity hooks and random vs adversarial vulnerability."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from snnrobust.analysis import (SparsityReport, op_gradient_stats, plot_sparsity_comparison,
                                plot_sparsity_figures)
from snnrobust.errors import ConfigError
from snnrobust.spiking import Connect, SeqToBatch


def _pool_model(pool: nn.Module) -> nn.Module:
    """conv -> pool -> linear on [B, 1, 8, 8]; dense upstream gradient into the pool."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), pool, nn.Flatten(), nn.Linear(3 * 16, 5))


def _data(n=6, c=1, size=8, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g), torch.randint(0, k, (n,), generator=g)


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


def test_maxpool_routes_gradient_to_one_input_per_window():
    model = _pool_model(nn.MaxPool2d(2, 2))
    x, y = _data()
    rep = op_gradient_stats(model, x, y, source="attack", batch_size=4)
    assert [r.kind for r in rep.rows] == ["conv", "maxpool", "linear"]
    pool = rep.rows[1]
    # 2x2/2 non-overlapping windows: at most one of four inputs per window gets gradient
    assert pool.in_zero_frac >= 0.75 - 1e-9
    assert pool.n == 6 and pool.in_numel == 3 * 8 * 8 and pool.out_numel == 3 * 4 * 4
    # the linear layer's output gradient (softmax - onehot) is dense, so is the pool's output gradient
    assert pool.out_zero_frac == 0.0
    assert rep.row("3").weight_density == pytest.approx(1.0)  # linear weight gradient dense
    assert _no_hooks(model)


def test_avgpool_spreads_dense_gradient():
    model = _pool_model(nn.AvgPool2d(2, 2))
    x, y = _data()
    rep = op_gradient_stats(model, x, y, batch_size=6)
    pool = rep.rows[1]
    assert pool.kind == "avgpool"
    assert pool.in_zero_frac == 0.0 and pool.out_zero_frac == 0.0
    # avg pool input gradient = output gradient / 4 spread over each window: norm halves
    assert pool.in_norm == pytest.approx(pool.out_norm / 2, rel=1e-5)


def test_per_sample_values_and_standard_error_match_manual_computation():
    model = _pool_model(nn.MaxPool2d(2, 2))
    x, y = _data(n=5)
    rep = op_gradient_stats(model, x, y, batch_size=2)  # batches of 2, 2, 1
    # reference: per-sample input gradient of the whole model, computed one sample at a time
    norms = []
    for i in range(5):
        xi = x[i:i + 1].clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xi), y[i:i + 1])
        (g,) = torch.autograd.grad(loss, xi)
        norms.append(g.norm().item())
    t = torch.tensor(norms, dtype=torch.float64)
    assert rep.input_norm == pytest.approx(t.mean().item(), rel=1e-5)
    assert rep.input_norm_se == pytest.approx((t.std() / math.sqrt(5)).item(), rel=1e-4)
    assert rep.rows[0].in_norm == pytest.approx(rep.input_norm, rel=1e-5)  # conv input = pixels
    for p in model.parameters():
        assert p.grad is None


def test_sew_resnet_ops_in_network_order_with_residual_joins(tiny_sew):
    model = tiny_sew()
    x, y = _data(n=4, size=12, k=10)
    rep = op_gradient_stats(model, x, y, source="attack", batch_size=3)
    names = [r.name for r in rep.rows]
    kinds = [r.kind for r in rep.rows]
    assert rep.rows[0].kind == "conv" and rep.rows[0].name == "backbone.stem.0"
    assert rep.rows[-1].kind == "linear" and rep.rows[-1].name == "backbone.head.fc"
    assert [r.index for r in rep.rows] == list(range(len(rep.rows)))
    assert kinds.count("residual") == 2 and "neuron" in kinds and "bn" in kinds and "maxpool" in kinds
    # execution order, not registration order: block 0's conv1 before its join, join before block 1
    assert names.index("backbone.blocks.0.conv1") < names.index("backbone.blocks.0.connect") \
        < names.index("backbone.blocks.1.conv1")
    # the downsample branch runs after the main branch in SEWBlock.forward
    assert names.index("backbone.blocks.1.sn2") < names.index("backbone.blocks.1.downsample.0")
    # wrapped layers are reported under the wrapper's name, not ".module"
    assert not any(n.endswith(".module") for n in names)
    # the stem max pool (3x3/2, pad 1) routes each window to one input: most entries get zero gradient
    stem_pool = rep.row("backbone.stem.3")
    assert stem_pool.kind == "maxpool" and stem_pool.in_zero_frac > 0.5
    assert rep.row("backbone.stem.0").weight_density is not None
    assert rep.row("backbone.stem.2").weight_density is None  # a neuron has no weight
    assert _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    # JSON round trip
    d = json.loads(json.dumps(rep.to_dict()))
    back = SparsityReport.from_dict(d)
    assert [r.name for r in back.rows] == names
    assert back.row("backbone.stem.3").in_zero_frac == pytest.approx(stem_pool.in_zero_frac)
    assert "backbone.blocks.0.connect" in rep.table()


def test_multistep_per_sample_split_uses_time_major_layout():
    """Per-sample statistics must not mix samples: through SeqToBatch ([T*B, ...]) and
    Connect ([T, B, ...]) they equal those computed one sample at a time."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = SeqToBatch(nn.Conv2d(1, 2, 3, padding=1))
            self.join = Connect("ADD")
            self.fc = SeqToBatch(nn.Linear(2 * 8 * 8, 3))

        def forward(self, x):  # x [B, 1, 8, 8] -> [T=3, B, ...]
            s = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
            h = self.conv(s)
            h = self.join(h, h * 0.5)
            return self.fc(h.flatten(2)).mean(0)

    torch.manual_seed(0)
    model = Net()
    x, _ = _data(n=3)
    y = torch.tensor([0, 2, 1])
    rep = op_gradient_stats(model, x, y, batch_size=3)
    conv, join = rep.row("conv"), rep.row("join")
    assert conv.n == 3 and join.n == 3
    assert conv.in_numel == 3 * 1 * 8 * 8 and conv.out_numel == 3 * 2 * 8 * 8
    assert join.in_numel == 2 * 3 * 2 * 8 * 8  # two inputs pooled
    # reference per-sample norms of the conv output gradient
    ref = []
    for i in range(3):
        xi = x[i:i + 1]
        h = model.conv(xi.unsqueeze(0).repeat(3, 1, 1, 1, 1)).detach().requires_grad_(True)
        out = model.fc(model.join(h, h * 0.5).flatten(2)).mean(0)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(out, y[i:i + 1], reduction="sum"), h)
        ref.append(g.norm().item())
    assert conv.out_norm == pytest.approx(sum(ref) / 3, rel=1e-5)


def test_train_source_restores_mode_buffers_and_grads(tiny_sew):
    model = tiny_sew(pool="avg")
    model.eval()
    before = {n: b.clone() for n, b in model.named_buffers()}
    x, y = _data(n=4, size=12, k=10)
    rep = op_gradient_stats(model, x, y, source="train", batch_size=4)
    assert rep.source == "train" and not model.training
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n
    assert all(p.grad is None for p in model.parameters())
    assert _no_hooks(model)
    assert rep.row("backbone.stem.3").kind == "avgpool"
    assert all(r.n == 4 for r in rep.rows)
    with pytest.raises(ConfigError):
        op_gradient_stats(model, x, y, source="train", estimator="ste")


def test_attack_source_with_an_attackers_estimator_restores_the_model(tiny_sew):
    from snnrobust.spiking import spiking_neurons

    model = tiny_sew()
    before = [(n.surrogate, n.estimator) for n in spiking_neurons(model)]
    x, y = _data(n=2, size=12, k=10)
    rep = op_gradient_stats(model, x, y, batch_size=2, estimator="bptr")
    assert "bptr" in rep.estimator.lower()
    assert rep.row("backbone.stem.2").kind == "neuron" and rep.row("backbone.stem.2").n == 2
    assert [(n.surrogate, n.estimator) for n in spiking_neurons(model)] == before
    assert _no_hooks(model)


def test_ann_twin_reports_relu_ops_and_bad_inputs_raise(tiny_sew):
    model = tiny_sew(spiking=False)
    x, y = _data(n=2, size=12, k=10)
    rep = op_gradient_stats(model, x, y, batch_size=2)
    assert "relu" in [r.kind for r in rep.rows] and "neuron" not in [r.kind for r in rep.rows]
    with pytest.raises(ConfigError):
        op_gradient_stats(model, x, y, source="nope")
    with pytest.raises(ConfigError):
        op_gradient_stats(model, x, y[:1])
    with pytest.raises(ConfigError):
        op_gradient_stats(model, x, y, batch_size=0)


def test_plots_write_png(tmp_path, tiny_sew):
    x, y = _data(n=3, size=12, k=10)
    reps = {"max pooling": op_gradient_stats(tiny_sew(pool="max"), x, y, batch_size=3),
            "avg pooling": op_gradient_stats(tiny_sew(pool="avg"), x, y, batch_size=3)}
    p = plot_sparsity_comparison(reps, tmp_path / "zero.png")
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    paths = plot_sparsity_figures(reps, tmp_path / "figs")
    assert set(paths) == {"in_zero_frac", "out_zero_frac", "in_norm", "out_norm", "weight_density"}
    assert all(q.stat().st_size > 5000 for q in paths.values())
    with pytest.raises(ConfigError):
        plot_sparsity_comparison(reps, tmp_path / "x.png", metric="bogus")


# -- vulnerability -------------------------------------------------------------------------
def _linear_model(d=8, k=3, dead=(1, 4, 6)):
    """Linear softmax model on [B, 1, 2, 4] images; pixels in ``dead`` have zero weight, so
    the input gradient has exactly d - len(dead) non-zero entries."""
    torch.manual_seed(1)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.mul_(3.0)
        lin.weight[:, list(dead)] = 0.0
    return nn.Sequential(nn.Flatten(), lin), d - len(dead)


def _prob_grad(model, x, y):
    x = x.clone().requires_grad_(True)
    p = torch.softmax(model(x).double(), 1).gather(1, y.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(p, x)
    return g.reshape(x.shape[0], -1).double()


def test_vulnerability_matches_closed_form_on_linear_model():
    from itertools import product

    from snnrobust.analysis import vulnerability

    model, nnz = _linear_model()
    g = torch.Generator().manual_seed(3)
    x = 0.2 + 0.6 * torch.rand(5, 1, 2, 4, generator=g)  # interior: no clamping at this eps
    y = torch.tensor([0, 1, 2, 0, 1])
    eps, n_random = 1e-3, 300
    rep = vulnerability(model, x, y, eps, n_random=n_random, attack_options={"steps": 40}, batch_size=3)

    grad = _prob_grad(model, x, y)  # [N, 8]
    # adversarial: eps * ||grad f_y||_1 (first order; both directions reach it)
    adv_ref = eps * grad.abs().sum(1)
    assert torch.allclose(torch.from_numpy(rep.adv), adv_ref, rtol=0.02)
    assert torch.allclose(torch.from_numpy(rep.down), adv_ref, rtol=0.02)
    # random: eps * E|grad . s| over all 2^8 sign vectors
    signs = torch.tensor(list(product([-1.0, 1.0], repeat=8)), dtype=torch.float64)  # [256, 8]
    rand_ref = eps * (grad @ signs.T).abs().mean(1)  # [N]
    s = rep.summary()
    se = float(rep.rand_draws.std()) / math.sqrt(rep.rand_draws.size)
    assert abs(s["rho_rand"] - rand_ref.mean().item()) < 4 * se + 0.02 * rand_ref.mean().item()
    assert s["rho_adv"] == pytest.approx(adv_ref.mean().item(), rel=0.02)
    # L0 counts exact zeros: the dead pixels
    assert rep.l0.tolist() == [nnz] * 5 and rep.n_inputs == 8
    # first-order bound ratio <= sqrt(2 L0), per sample and for the model
    assert rep.holds.all() and s["frac_bound_holds"] == 1.0 and s["ratio_within_model_bound"]
    assert s["bound_model"] == pytest.approx(math.sqrt(2 * nnz))
    assert (rep.ratio <= math.sqrt(2 * nnz)).all() and (rep.ratio >= 1.0).all()
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["summary"]["n"] == 5 and d["settings"]["attack"]["name"] == "pgd"
    assert "rho_adv" in rep.table()


def test_vulnerability_attacks_misclassified_samples_too():
    """rho_adv is a max of |change of f_y|, not of misclassification: a sample the model
    already gets wrong must still be pushed (the attack view is never 'fooled')."""
    from snnrobust.analysis import vulnerability

    model, _ = _linear_model(dead=())
    x = 0.2 + 0.6 * torch.rand(4, 1, 2, 4, generator=torch.Generator().manual_seed(5))
    wrong = (model(x).argmax(1) + 1) % 3  # every label wrong
    rep = vulnerability(model, x, wrong, 1e-3, n_random=2, attack_options={"steps": 20})
    ref = 1e-3 * _prob_grad(model, x, wrong).abs().sum(1)
    assert not rep.correct.any()
    assert torch.allclose(torch.from_numpy(rep.down), ref, rtol=0.03)
    assert torch.allclose(torch.from_numpy(rep.up), ref, rtol=0.03)


def test_vulnerability_runs_on_spiking_model_and_validates(tiny_sew):
    from snnrobust.analysis import vulnerability

    model = tiny_sew()
    x, y = _data(n=3, size=12, k=10)
    rep = vulnerability(model, x, y, "8/255", n_random=2, attack_options={"steps": 3}, estimator="bptt:triangle:1")
    s = rep.summary()
    assert rep.n == 3 and 0 <= s["frac_bound_holds"] <= 1
    assert (rep.adv >= rep.rand_draws.max(1)).all() and (rep.l0 <= 144).all()
    assert rep.settings["estimator"].lower().startswith("bptt")
    assert all(p.grad is None for p in model.parameters()) and _no_hooks(model)
    with pytest.raises(ConfigError):
        vulnerability(model, x, y, -1.0)
    with pytest.raises(ConfigError):
        vulnerability(model, x, y, 0.1, n_random=0)
