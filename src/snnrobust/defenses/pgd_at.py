"""``pgd-at``: adversarial training with PGD (Madry et al. 2018), crafted through the attack
machinery (:mod:`.adversarial`): each step trains on the last PGD iterate only (or, with
``queries``, on where a random search from it ended).

Defaults: eps 8/255, 7 steps with a random start, step 2.5 * eps / steps (the pgd attack's
rule), L-inf, no random-search queries after PGD (``queries``; window ``query_window`` of the image),
no local-linearity penalty (``linearity``: its weight; ``linearity_draws`` random vertices, :mod:`.linearity`),
estimator bptt (the model's own surrogate), EOT the Victim's default. Cost:
``steps`` input gradients per batch on top of the training step, about (steps + 1)x plain BPTT,
plus one forward pass per query.
"""

from __future__ import annotations

from typing import Any

from .adversarial import AdversarialTraining


class PGDAT(AdversarialTraining):
    name = "pgd-at"
    description = "adversarial training on PGD examples, Madry et al. 2018"
    options: dict[str, Any] = {"eps": 8 / 255, "steps": 7, "step_size": None, "random_start": True, "norm": "linf",
                               "estimator": "bptt", "eot": None, "bn_mode": "eval",
                               "queries": 0, "query_window": 0.05, "linearity": 0.0, "linearity_draws": 1}
