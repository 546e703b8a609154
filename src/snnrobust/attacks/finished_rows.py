"""Stop computing APGD's rows once they are broken, on a deterministic victim.

The official APGD loop (pyautoattack) runs all ``n_iter`` iterations on every row it is
given, though a robust-accuracy evaluation only asks whether some iterate fools the model: on
an undefended SNN most rows are misclassified within a few steps and the rest of the loop is
spent on them. :class:`FinishedRows` stands in for the model inside one official inner run
and computes the forward pass (and so the input gradient) only for rows not broken yet.

Why the outcome is unchanged: APGD's rows are independent (per-row step sizes, checkpoints and
momentum; the summed loss's gradient is per row), so dropping a row does not move the others.
A broken row's answer is the iterate at which a pass first misclassified it (``x_break``); the
official loop keeps "its last misclassified iterate", which is that iterate as long as the
later passes it is shown call the row correct. So a finished row is shown constant logits that
put all mass on its label (loss ~0, no gradient): the loop neither overwrites its kept point
nor takes the constant as a higher loss under CE. When every row is finished the run stops
(:class:`AllBroken`), and the caller takes ``x_break`` as the candidate.

Only for deterministic victims with one pass per gradient (``eot_iter`` 1): on a stochastic
victim one pass's "misclassified" is noisy, and the later iterates are further chances that a
vote would accept. The caller checks that; the finished iterates are scored by the victim's
vote like every other candidate.

Shapes: x [n, C, H, W] pixels in [0, 1]; logits [n, K]; labels y [n].
"""

from __future__ import annotations

import torch
from torch import nn

#: The finished rows' logit on their label (others 0): CE is 0 in float32 and the prediction is the label.
_CONSTANT_LOGIT = 1e4


class AllBroken(Exception):
    """Every row of the inner run has been misclassified by a pass: nothing is left to attack."""


class FinishedRows(nn.Module):
    """``forward(x) -> logits`` through ``module`` for the rows of x not broken yet (module
    docstring). ``x_break`` [n, ...] holds each finished row's breaking iterate (an unfinished
    row holds its start) and ``done`` [n] which rows are finished."""

    def __init__(self, module: nn.Module, y: torch.Tensor) -> None:
        super().__init__()
        self.module = module
        self.y = y.long()
        self.done = torch.zeros_like(self.y, dtype=torch.bool)
        self.x_break: torch.Tensor | None = None
        self.calls = 0
        self.rows_computed = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.y.shape[0]:
            raise RuntimeError(f"APGD passed {x.shape[0]} rows to a run set up for {self.y.shape[0]}: "
                               "pyautoattack changed")
        if self.x_break is None:
            self.x_break = x.detach().clone()
        active = (~self.done).nonzero().squeeze(1)
        self.calls += 1
        self.rows_computed += int(active.numel())
        if active.numel() == x.shape[0]:
            out = self.module(x)
            out_active = out
        else:
            out_active = self.module(x.index_select(0, active))
            constant = torch.zeros(x.shape[0], out_active.shape[1], dtype=out_active.dtype,
                                   device=out_active.device)
            constant[torch.arange(x.shape[0], device=constant.device), self.y] = _CONSTANT_LOGIT
            out = constant.index_copy(0, active, out_active)
        broken = out_active.detach().max(1)[1] != self.y[active]  # the official loop's test
        newly = active[broken]
        if newly.numel():
            self.x_break[newly] = x.detach().index_select(0, newly)
            self.done[newly] = True
            if bool(self.done.all()):
                raise AllBroken
        return out
