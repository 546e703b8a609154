"""``rat``: SNN-RAT (Ding et al. 2022, "SNN-RAT: robustness-enhanced spiking neural network
through regularized adversarial training"): adversarial training plus weight orthogonality.

Orthogonality of every Conv2d / Linear weight W (reshaped to [out, in * kh * kw]) is measured by

    R(model) = sum over layers of ||G - I||_F^2,   G = W W^T (out <= in) or W^T W (out > in)

(the smaller Gram matrix, so that R = 0 exactly when W has orthonormal rows or columns) and
enforced as SNN-RAT does, by a Parseval retraction after every optimizer step:

    W <- W - beta * (W W^T - I) W    (= (1 + beta) W - beta W W^T W)

which is one gradient step of size beta on R / 4 for either Gram (W (W^T W - I) = (W W^T - I) W),
taken outside the optimizer so that Adam's scaling does not change its strength. It drives
every singular value of W towards 1. (SNN-RAT's code retracts a random 30 % of the rows of
linear layers with 200 or more rows, for speed; here every row is retracted.)

The adversarial part is :mod:`.adversarial`'s crafting. Defaults are those of SNN-RAT's
released CIFAR-10 run: single-step FGSM at eps 2/255 without a random start (step eps),
beta 0.004; ``steps`` > 1 makes it PGD (step 2.5 * eps / steps unless given).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .adversarial import AdversarialTraining
from .base import check_number


def orthogonal_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights the regularizer constrains: every Conv2d (any dims) and Linear weight."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def orthogonality_penalty(model: nn.Module) -> torch.Tensor:
    """R(model) of the module docstring: a scalar >= 0, 0 iff every constrained weight has
    orthonormal rows (or columns, when it has more rows than columns)."""
    total = torch.zeros(())
    for w in orthogonal_weights(model):
        m = w.reshape(w.shape[0], -1).float()
        gram = m @ m.t() if m.shape[0] <= m.shape[1] else m.t() @ m
        eye = torch.eye(gram.shape[0], device=gram.device)
        total = total.to(gram.device) + (gram - eye).pow(2).sum()
    return total


@torch.no_grad()
def orthogonal_retraction(model: nn.Module, beta: float) -> None:
    """W <- W - beta (W W^T - I) W for every constrained weight, in place."""
    for w in orthogonal_weights(model):
        m = w.reshape(w.shape[0], -1)
        w.copy_((m - beta * (m @ m.t() @ m - m)).reshape(w.shape))


class RAT(AdversarialTraining):
    name = "rat"
    description = "SNN-RAT, Ding et al. 2022: adversarial training + Parseval weight orthogonality"
    options: dict[str, Any] = {"eps": 2 / 255, "steps": 1, "step_size": None, "random_start": False, "beta": 0.004,
                               "norm": "linf", "estimator": "bptt", "eot": None, "bn_mode": "eval"}

    def default_step(self, opts: dict[str, Any]) -> float:
        """FGSM's eps for one step (SNN-RAT's), the pgd attack's 2.5 * eps / steps otherwise."""
        steps = int(opts.get("steps", 1))
        return float(opts["eps"]) if steps == 1 else 2.5 * float(opts["eps"]) / steps

    def _validate_more(self, opts: dict[str, Any]) -> dict[str, Any]:
        opts["beta"] = check_number(self.name, "beta", opts["beta"], 0.0, 0.5, low_open=False)
        return opts

    def after_step(self, model: nn.Module) -> None:
        orthogonal_retraction(model, float(self.settings["beta"]))

    def epoch_stats(self, model: nn.Module) -> dict[str, float]:
        return {**super().epoch_stats(model), "orthogonality": float(orthogonality_penalty(model).detach())}
