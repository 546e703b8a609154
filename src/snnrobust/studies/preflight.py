"""Check that a study starts, before spending GPU hours on it: ``snnrobust study NAME --check``.

For every model variant of a recipe size this builds the model for the real dataset,
takes one timed BPTT step (after one warm-up step), expands every attack protocol into its
attack list for that model and budget, builds each attack, and computes one input gradient
under every gradient estimator the protocols use. It writes nothing and trains nothing
to completion; it returns one :class:`VariantCheck` per variant with the time estimates a
user needs to plan the full run. Errors are the same one-line errors the study would give.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..evaluation.engine import attack_specs, model_surrogate, suite_context
from ..attacks.registry import get_attack
from ..evaluation.request import EvaluationRequest
from ..evaluation.threat import ThreatModel
from ..evaluation.victim import Victim
from ..data import get_dataset
from ..data.events import frames_for_model
from ..errors import ConfigError
from ..spiking.functional import smoothable_encoders
from ..training.trainer import build_model_for, make_optimizer, resolve_device, train_step
from .recipes import load_recipe
from .runner import StudyRunner, protocol_keywords, study_threat, transfer_sources


@dataclass
class VariantCheck:
    """What the check found for one variant. Times in seconds; ``step_images`` is the batch
    the timed step used; ``epoch_hours`` extrapolates it to one epoch of the training split."""

    label: str
    parameters: int
    step_images: int
    step_s: float
    epoch_hours: float
    epochs: int
    attacks: dict[str, int] = field(default_factory=dict)       # protocol -> number of attack specs
    estimators: dict[str, float] = field(default_factory=dict)  # estimator -> seconds per input gradient
    overflows: dict[str, int] = field(default_factory=dict)     # estimator -> images whose gradient overflowed
    defense: str = ""                                            # the training-time defense the step used

    @property
    def train_hours(self) -> float:
        return self.epoch_hours * self.epochs


def check_study(name: str, size: str = "full", data_root: Optional[str] = None, device: str = "auto",
                batch: Optional[int] = None, variants: Optional[list[str]] = None,
                log=print) -> list[VariantCheck]:
    """Run the start-up check of study ``name`` at ``size``. ``batch`` images per timed
    training step (default: the recipe's batch size, which gives the honest per-image time);
    gradients are taken on 2 test images. ``variants`` restricts the check to those labels."""
    recipe = load_recipe(name)
    runner = StudyRunner(recipe, size, "unused", data_root, device, progress=False, log=log)
    spec = runner.spec
    labels = [v["label"] for v in spec["variants"]]
    unknown = sorted(set(variants or []) - set(labels))
    if unknown:
        raise ConfigError(f"study {name} has no variant {', '.join(unknown)}; its variants: {', '.join(labels)}")
    dev = resolve_device(device)
    splits = get_dataset(spec["dataset"], root=data_root, split_seed=int(spec["train"].get("split_seed", 0)),
                         frames=frames_for_model(spec["model"]))
    info = splits.info
    xg, yg = splits.test.batch(torch.arange(min(2, len(splits.test))))
    # every variant is built first: transfer protocols take the others as sources
    configs = {v["label"]: runner._variant_train_config(v) for v in spec["variants"] if not v.get("convert")}
    models: dict = {}
    for v in spec["variants"]:
        models[v["label"]] = check_model(runner, v, configs, models, splits, info).to(dev)
    out: list[VariantCheck] = []
    for v in spec["variants"]:
        if variants and v["label"] not in variants:
            continue
        model = models[v["label"]]
        if v.get("convert"):
            # converted, not trained: no training step to time (the conversion itself is a few
            # forward passes over the calibration images per layer)
            row = VariantCheck(label=v["label"], parameters=sum(p.numel() for p in model.parameters()),
                               step_images=0, step_s=0.0, epoch_hours=0.0, epochs=0)
            log(f"[check] {v['label']}: converts from {v['convert']['from']} (not trained)")
        else:
            row = _time_training_step(v, configs[v["label"]], model, splits, batch, dev)
            log(f"[check] {v['label']}: model builds, one training step of {row.step_images} images took "
                f"{row.step_s:.2f}s")
        if v.get("attack", True):
            _check_protocols(runner, v["label"], model, models, info.num_classes, xg, yg, dev, row, log)
        out.append(row)
    return out


def _time_training_step(v: dict, cfg, model, splits, batch: Optional[int], dev: torch.device) -> VariantCheck:
    """One warm-up and one timed BPTT step of variant ``v`` (``batch`` images, default its own),
    with its training-time defense when it has one (adversarial training's crafting, SR's extra
    passes: the step the study will take)."""
    from ..defenses import defense_from_config

    n = min(int(batch or cfg.batch_size), len(splits.train))
    x, y = splits.train.batch(torch.arange(n))
    x, y = x.to(dev), y.to(dev)
    opt = make_optimizer(cfg, model)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    defense = defense_from_config(cfg.defense)
    if defense is not None:
        defense.start_epoch(0)
    model.train()
    # warm-up (allocator, kernels) on a couple of images, then one timed step of n images
    train_step(model, opt, scaler, x[:2], y[:2], use_amp, where=f"in the check of {v['label']}", defense=defense)
    _sync(dev)
    t0 = time.perf_counter()
    train_step(model, opt, scaler, x, y, use_amp, where=f"in the check of {v['label']}", defense=defense)
    _sync(dev)
    step_s = time.perf_counter() - t0
    model.eval()
    return VariantCheck(label=v["label"], parameters=sum(p.numel() for p in model.parameters()),
                        step_images=int(x.shape[0]), step_s=step_s,
                        epoch_hours=step_s / x.shape[0] * len(splits.train) / 3600, epochs=cfg.epochs,
                        defense="" if defense is None else defense.name)


def check_model(runner: StudyRunner, v: dict, configs: dict, models: dict, splits, info):
    """Variant ``v``'s model as the study would make it, untrained: built from its config; or,
    for Sharmin et al. 2020's derived variants, converted in memory from its (untrained) source
    ANN on 4 training images (``convert``), or derived from its converted source the way
    fine-tuning starts (``init_from``)."""
    from ..conversion import ConversionConfig, convert_model
    from ..conversion.hybrid import hybrid_config
    from ..models import model_from_dict

    if v.get("convert"):
        cfg = runner._conversion_config(v)
        # thresholds balanced over at most 16 steps (their values do not matter to a check; the
        # balancing time does not either), the model then rebuilt at the recipe's T
        check_cfg = ConversionConfig(**{**cfg.__dict__, "calibration_samples": 4, "eval_samples": 4,
                                        "T": min(cfg.T, 16)})
        calib, _ = splits.train.batch(torch.arange(min(4, len(splits.train))))
        converted = convert_model(models[v["convert"]["from"]], calib, check_cfg).model
        model = model_from_dict({**converted.config.to_dict(), "T": cfg.T})
        model.load_state_dict(converted.state_dict(), strict=True)
        return model
    if v.get("init_from"):
        converted = models[v["init_from"]]
        cfg = configs[v["label"]]
        d = hybrid_config(converted.config.to_dict(), cfg.model, cfg.threshold_scale, info,
                          where=f"variant {v['init_from']}")
        model = model_from_dict(d)
        model.load_state_dict(converted.state_dict(), strict=True)
        return model
    return build_model_for(configs[v["label"]], info)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _check_protocols(runner: StudyRunner, label: str, model, models: dict, k: int,
                     x: torch.Tensor, y: torch.Tensor, dev: torch.device, row: VariantCheck, log) -> None:
    """Expand each protocol for ``model``, build its attacks, time one input gradient per estimator."""
    has_spiking, own_sg = model_surrogate(model)
    base = Victim(model, study_threat(runner.spec), device=dev)
    estimators: list[tuple[Optional[str], ThreatModel]] = []
    for proto in runner.spec["protocols"]:
        threat = study_threat(runner.spec, proto)
        sources = transfer_sources(runner.spec, label, proto, models)
        if sources is None:
            continue  # the study runs this protocol only for models with a source
        # the study's own request and spec list, so the check expands exactly what the run will
        plan = EvaluationRequest(**protocol_keywords(runner.spec, proto, threat, sources, progress=False)).plan
        specs = attack_specs(plan, suite_context(plan, threat, has_spiking=has_spiking, own_surrogate=own_sg,
                                                 stochastic=base.stochastic, num_classes=k,
                                                 smooth_encoder=bool(smoothable_encoders(model))))
        for s in specs:
            get_attack(s.attack, **s.options)  # options are validated when the attack is built
            if s.estimator not in [e for e, _ in estimators] and s.kind in ("gradient", "single-step"):
                estimators.append((s.estimator, threat))
        row.attacks[proto["name"]] = len(specs)
    for e, threat in estimators:
        victim = Victim(model, threat, estimator=e, eot=1, device=dev)
        z = victim.start(x)
        t0 = time.perf_counter()
        loss, g = victim.grad(z, y)
        _sync(dev)
        row.estimators[str(e)] = time.perf_counter() - t0
        if not torch.isfinite(loss).all():
            raise ConfigError(f"{label}: the attack loss under estimator {e} is not finite; check the model's weights")
        if victim.nonfinite_samples:
            row.overflows[str(e)] = victim.nonfinite_samples
            log(f"[check] {label}: input gradients under {e} overflow on {victim.nonfinite_samples} of "
                f"{x.shape[0]} images (attacks use their limit direction and report it)")
    log(f"[check] {label}: {sum(row.attacks.values())} attacks in {len(row.attacks)} protocols build; "
        f"input gradients taken under {len(estimators)} estimators")


def _duration(hours: float) -> str:
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:.1f} h"


def format_checks(rows: list[VariantCheck]) -> str:
    """The check's table for the terminal."""
    lines = ["| model | parameters | one training step | est. training time | attacks per protocol | "
             "input gradient (s, 2 images) |", "|---|---:|---|---|---|---|"]
    for r in rows:
        attacks = ", ".join(f"{p}: {n}" for p, n in r.attacks.items()) or "not attacked"
        grads = (f"{min(r.estimators.values()):.2f}-{max(r.estimators.values()):.2f} "
                 f"over {len(r.estimators)} estimators") if r.estimators else "-"
        if r.overflows:
            grads += "; overflow under " + ", ".join(f"{e} ({n})" for e, n in r.overflows.items())
        if r.step_images:
            step = f"{r.step_s:.2f}s for {r.step_images} images" + (f" ({r.defense})" if r.defense else "")
            total = f"{_duration(r.epoch_hours)}/epoch, {_duration(r.train_hours)} for {r.epochs} epochs"
        else:
            step, total = "- (converted, not trained)", "-"
        lines.append(f"| {r.label} | {r.parameters:,} | {step} | {total} | {attacks} | {grads} |")
    lines.append("")
    lines.append("Training time is extrapolated from one timed training step on this device (per-epoch evaluation "
                 "not included); a --check-batch smaller than the recipe's batch overestimates it.")
    return "\n".join(lines)
