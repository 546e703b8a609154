"""``fast-at``: single-step adversarial training, FGSM from a random start (Wong et al. 2020,
"Fast is better than free"): z = P(x + U(ball)), z = P(z + 1.25 eps * sign grad), train on z.
One input gradient per batch, about 2x plain BPTT: the CPU choice. Crafted through the attack
machinery (:mod:`.adversarial`), so the estimator and EOT are chosen as for pgd-at.
"""

from __future__ import annotations

from typing import Any

from .adversarial import AdversarialTraining


class FastAT(AdversarialTraining):
    name = "fast-at"
    description = "FGSM with a random start, Wong et al. 2020"
    options: dict[str, Any] = {"eps": 8 / 255, "step_size": None, "norm": "linf", "estimator": "bptt", "eot": None,
                               "bn_mode": "eval"}

    @property
    def steps(self) -> int:
        return 1

    @property
    def random_start(self) -> bool:
        return True

    def default_step(self, opts: dict[str, Any]) -> float:
        """Wong et al. 2020's step: 1.25 * eps (the random start plus one step reaches the ball's
        boundary in most coordinates)."""
        return 1.25 * float(opts["eps"])
