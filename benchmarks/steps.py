"""The steps the throughput benchmarks time: one training step and one input-gradient step on a
fixed batch (images x [B, C, H, W] in [0, 1], labels y [B]), and the device sync after them."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def timed_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                device: str) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """(sync, train_step, grad_step): wait for the device; one SGD/Adam step on the
    cross-entropy; the cross-entropy's gradient with respect to the input."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def grad_step() -> None:
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y), xr)

    return sync, train_step, grad_step
