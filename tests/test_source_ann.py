"""The ``source-ann`` estimator: BPDA for converted/hybrid SNNs (forward through the SNN, input
gradient through its source ANN), its model restoration, the reliable suite adding it for a
checkpoint with an ``ann_source``, and the one-line error without one. Tiny SEW-ResNets (an
ANN and an SNN of the same architecture sharing its weights, as after conversion)."""

from __future__ import annotations

import pytest
import torch

from snnrobust.attacks.losses import get_loss
from snnrobust.cli.main import main
from snnrobust.errors import CheckpointError, ConfigError
from snnrobust.estimators import SourceANN, ann_from_source, get_estimator
from snnrobust.evaluation import engine as ev
from snnrobust.evaluation.request import EvaluationRequest
from snnrobust.evaluation.suites import expand, get_budget
from snnrobust.evaluation.threat import ThreatModel
from snnrobust.evaluation.victim import Victim
from snnrobust.training import load_checkpoint, save_checkpoint

from conftest import make_tiny_sew

pytestmark = pytest.mark.usefixtures("one_thread")


def pair(image_size: int = 12):
    """(ANN, SNN) of the same tiny SEW-ResNet, the SNN carrying the ANN's weights (direct input,
    T = 4, IF neurons), both in eval mode. Their logits differ: the SNN only approximates it."""
    ann = make_tiny_sew(seed=1, spiking=False, encoder="direct", T=1, image_size=image_size).eval()
    snn = make_tiny_sew(seed=2, encoder="direct", T=4, image_size=image_size, threshold=0.5).eval()
    snn.load_state_dict(ann.state_dict())
    return ann, snn


def data(n: int = 6, size: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.arange(n) % 10


def test_bpda_gradient_is_the_anns_input_gradient_and_the_value_is_the_snns():
    ann, snn = pair()
    x, y = data()
    with torch.no_grad():
        l_snn, l_ann = snn(x), ann(x)
    assert not torch.allclose(l_snn, l_ann, atol=1e-3)  # the two models really differ
    victim = Victim(snn, estimator=SourceANN(ann))
    ce = get_loss("ce")
    loss, g = victim.grad(x, y, loss="ce")
    # the value is the SNN's: the loss at the SNN's logits, bit for bit
    assert torch.equal(loss, ce(l_snn, y))
    # the gradient: the ANN's Jacobian applied to dL/dlogits taken at the SNN's logits
    ls = l_snn.clone().requires_grad_(True)
    (dl,) = torch.autograd.grad(ce(ls, y).sum(), ls)
    xx = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(ann(xx), xx, grad_outputs=dl)
    assert torch.equal(g, want)
    # for a loss linear in the logits that is exactly the ANN's own input gradient of the same loss
    def neg_true_logit(out, y):
        return -out.gather(1, y[:, None]).squeeze(1)

    loss_lin, g_lin = victim.grad(x, y, loss=neg_true_logit)
    xx = x.clone().requires_grad_(True)
    (want_lin,) = torch.autograd.grad(neg_true_logit(ann(xx), y).sum(), xx)
    assert torch.equal(g_lin, want_lin) and g_lin.abs().sum() > 0
    assert torch.equal(loss_lin, neg_true_logit(l_snn, y))
    # ... and not the SNN's own surrogate gradient
    _, g_bptt = Victim(snn, estimator="bptt").grad(x, y, loss=neg_true_logit)
    assert not torch.allclose(g_bptt, g_lin)
    # logits and predictions through the victim (with a graph, as AutoAttack calls it) are the SNN's
    with victim.attack_mode():
        out = victim.module()(x.clone().requires_grad_(True))
    assert torch.equal(out.detach(), l_snn)
    assert torch.equal(victim.predict(x), l_snn.argmax(1))
    assert torch.equal(victim.logits(x), l_snn)


def test_model_and_ann_are_restored_after_use_and_after_an_exception():
    ann, snn = pair()
    x, _ = data(2)
    plain = snn(x)
    est = SourceANN(ann)
    ann.train()  # a flag the estimator changes while active and must give back
    with est.applied(snn):
        assert "forward" in vars(snn) and not ann.training
        assert torch.equal(snn(x), plain)  # no graph: the SNN alone
    assert "forward" not in vars(snn) and "forward_encoded" not in vars(snn) and ann.training
    with pytest.raises(RuntimeError, match="boom"):
        with est.applied(snn):
            raise RuntimeError("boom")
    assert "forward" not in vars(snn) and "forward_encoded" not in vars(snn) and ann.training
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(snn(xx).sum(), xx)  # the SNN's own graph again (surrogate BPTT)
    ann.eval()
    with est.applied(snn):
        xx = x.clone().requires_grad_(True)
        (g_ann,) = torch.autograd.grad(snn(xx).sum(), xx)
    assert not torch.equal(g, g_ann)
    # without an ANN, or on the spike tensor: one-line errors, and nothing is left patched
    with pytest.raises(ConfigError, match="no ann_source") as e:
        with SourceANN().applied(snn):
            pass
    assert "\n" not in str(e.value) and "forward" not in vars(snn)
    spikes = Victim(snn, ThreatModel(perturb="spikes"), estimator=SourceANN(ann))
    with pytest.raises(ConfigError, match="perturb=pixels"):
        spikes.grad(spikes.start(x), torch.zeros(2, dtype=torch.long))
    assert "forward" not in vars(snn) and "forward_encoded" not in vars(snn)


def _reliable_estimators(**request) -> tuple[list[str], list[str]]:
    plan = EvaluationRequest(suite="reliable", **request).plan
    ctx = ev.suite_context(plan, plan.threat, has_spiking=True, own_surrogate="atan:2", stochastic=False,
                           num_classes=10)
    specs = expand(plan.suite, ctx)
    return list(dict.fromkeys(s.estimator for s in specs if s.estimator)), ctx.notes


def test_reliable_suite_adds_source_ann_only_when_the_model_has_a_source():
    ann, snn = pair()
    source = {"model_config": ann.config.to_dict(), "model_state": ann.state_dict(), "checkpoint": "ann/ckpt.pt",
              "sha256": "ab" * 32}
    with_source, notes = _reliable_estimators(source_ann=source)
    assert with_source[-1] == "source-ann" and with_source[0] == "bptt:atan:2"
    assert any("source-ann added" in n and "ann/ckpt.pt" in n and "abababababab" in n for n in notes)
    without, notes = _reliable_estimators()
    assert "source-ann" not in without and with_source[:-1] == without
    assert not any("source-ann" in n for n in notes)
    # the caller's estimator list is taken as given; spike-tensor perturbation leaves it out
    given, _ = _reliable_estimators(source_ann=ann, estimators=["bptt"])
    assert given == ["bptt"]
    spikes, notes = _reliable_estimators(source_ann=ann, threat={"perturb": "spikes"})
    assert "source-ann" not in spikes and any("source-ann left out" in n for n in notes)


def test_evaluate_a_converted_checkpoint_end_to_end(tmp_path):
    ann, snn = pair(image_size=12)
    path = tmp_path / "converted.pt"
    save_checkpoint(path, {
        "model_config": snn.config.to_dict(), "model_state": snn.state_dict(),
        "ann_source": {"model_config": ann.config.to_dict(), "model_state": ann.state_dict(),
                       "checkpoint": "ann.pt", "sha256": "0" * 64},
        "provenance": [{"step": "convert", "method": "test"}]})
    model, ckpt = load_checkpoint(path)
    x, y = data(8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample correct at the clean point, so every one is attacked
    res = ev.evaluate(model, x, y, attack="pgd", attack_options={"steps": 3}, estimators=["source-ann"],
                      source_ann=ckpt["ann_source"], progress=False, diagnostics=False)
    rec = res.attacks[0]
    assert rec.estimator["label"] == "SourceANN" and rec.estimator["name"] == "source-ann"
    assert rec.n_attacked == 8 and rec.gradient_images > 0
    assert res.to_dict()["protocol"]["estimators"] == ["source-ann"]
    assert get_estimator(rec.estimator) == SourceANN()  # recorded like the others, read back by the registry
    # the reliable suite on the same checkpoint runs it, and the gradients do go through the ANN
    rebuilt = ann_from_source(ckpt["ann_source"])
    calls = []
    rebuilt.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    budget = get_budget("quick").override(steps=2, square_queries=5)
    res = ev.evaluate(model, x, y, suite="reliable", budget=budget, source_ann=rebuilt, progress=False,
                      diagnostics=False)
    assert "source-ann" in res.protocol["estimators"]
    assert any(r.estimator and r.estimator["label"] == "SourceANN" for r in res.attacks)
    assert calls  # the ANN ran (with a graph: scoring passes never call it)


def test_attack_cli_uses_the_checkpoints_ann_source(tmp_path, capsys):
    import json

    ann, snn = pair(image_size=28)
    path = tmp_path / "conv.pt"
    save_checkpoint(path, {"model_config": snn.config.to_dict(), "model_state": snn.state_dict(),
                           "data": {"dataset": "mnist5k", "split_seed": 0},
                           "ann_source": {"model_config": ann.config.to_dict(), "model_state": ann.state_dict(),
                                          "checkpoint": "ann.pt", "sha256": "f" * 64}})
    out = tmp_path / "res.json"
    assert main(["attack", str(path), "--attack", "fgsm", "--estimator", "source-ann", "--n", "4", "--no-progress",
                 "--out", str(out)]) == 0
    assert "SourceANN" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["model"]["ann_source"] == {"checkpoint": "ann.pt", "sha256": "f" * 64}
    assert res["attacks"][0]["estimator"]["label"] == "SourceANN"


def test_source_ann_without_a_source_is_a_one_line_error(tmp_path, capsys, tiny_checkpoint):
    ann, snn = pair()
    x, y = data(2)
    with pytest.raises(ConfigError) as e:
        ev.evaluate(snn, x, y, attack="pgd", estimators=["source-ann"], progress=False)
    assert "no ann_source" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="perturb=pixels"):
        ev.evaluate(snn, x, y, suite="standard", estimators=["source-ann"], source_ann=ann,
                    threat={"perturb": "spikes"}, progress=False)
    assert main(["attack", str(tiny_checkpoint), "--attack", "pgd", "--estimator", "source-ann", "--n", "2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no ann_source" in err and "\n" not in err


@pytest.mark.parametrize("broken", ["missing", "spiking", "weights"])
def test_a_malformed_ann_source_is_a_one_line_checkpoint_error(broken):
    ann, snn = pair()
    source = {"model_config": ann.config.to_dict(), "model_state": ann.state_dict()}
    if broken == "missing":
        del source["model_state"]
    elif broken == "spiking":
        source = {"model_config": snn.config.to_dict(), "model_state": snn.state_dict()}
    else:
        source["model_state"] = {k: v[:1] if v.dim() else v for k, v in source["model_state"].items()}
    with pytest.raises(CheckpointError) as e:
        ann_from_source(source)
    assert "\n" not in str(e.value)


def test_spec_and_registry():
    est = get_estimator("source-ann")
    assert isinstance(est, SourceANN) and est.ann is None and est.label() == "SourceANN"
    assert get_estimator(est.to_dict()) == est and est.spec() == "source-ann"
    ann, _ = pair()
    assert est.bound(ann).ann is ann and est.bound(None) is est
    with pytest.raises(ConfigError, match="too many fields"):
        get_estimator("source-ann:2")
