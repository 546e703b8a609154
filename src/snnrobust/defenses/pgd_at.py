"""``pgd-at``: adversarial training with PGD (Madry et al. 2018), crafted through the attack
machinery (:mod:`.adversarial`): each step trains on the last PGD iterate only.

Defaults: eps 8/255, 7 steps with a random start, step 2.5 * eps / steps (the pgd attack's
rule), L-inf, estimator bptt (the model's own surrogate), EOT the Victim's default. Cost:
``steps`` input gradients per batch on top of the training step, about (steps + 1)x plain BPTT.
"""

from __future__ import annotations

from typing import Any

from .adversarial import AdversarialTraining


class PGDAT(AdversarialTraining):
    name = "pgd-at"
    description = "adversarial training on PGD examples, Madry et al. 2018"
    options: dict[str, Any] = {"eps": 8 / 255, "steps": 7, "step_size": None, "random_start": True, "norm": "linf",
                               "estimator": "bptt", "eot": None, "bn_mode": "eval"}
