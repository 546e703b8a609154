"""The IF/LIF time loop as one autograd function over all T steps (exact BPTT through the
neuron's surrogate): memory-lean BPTT, used by :meth:`SpikingNeuron.run` when the neuron's
``fused`` flag is set (:func:`~snnrobust.spiking.functional.fused_bptt`) and no estimator hook
is active.

The reference loop in :meth:`~snnrobust.spiking.neurons.SpikingNeuron.run` records about six
autograd nodes per step and keeps their inputs; this function runs the forward loop in place
without autograd, keeps only the pre-spike membrane u [T, B, ...] (spikes are recomputed as
u >= threshold), and back-propagates through time by hand:

    u_t = rest + lam (v_{t-1} - rest) + x_t,   s_t = H(u_t - th),   sg_t = surrogate'(u_t - th)
    v_t = u_t (1 - s_t) + v_reset s_t  (hard)   |   v_t = u_t - th s_t  (soft)

    dL/du_t = dL/ds_t sg_t + dL/dv_t dv_t/du_t,
      dv_t/du_t = (1 - s_t) + (v_reset - u_t) sg_t  (hard)   |   1 - th sg_t  (soft)
      (the sg_t term only without ``detach_reset``: the detached reset passes no gradient to s_t)
    dL/dx_t = dL/du_t,   dL/dv_{t-1} = lam dL/du_t

Forward values are the reference loop's bit for bit; gradients equal it to float rounding (the
products are summed in another order). On float32 CPU tensors both directions can run in a
compiled kernel instead (:mod:`snnrobust.spiking.cpu_kernel`, opt-in), under the same contract.
It is not twice differentiable (nothing in snnrobust needs that; a second backward raises).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from . import cpu_kernel

GradFn = Callable[[torch.Tensor, float], torch.Tensor]


def run_in_place(x_seq: torch.Tensor, v: torch.Tensor, threshold: float, leak: float, rest: float, v_reset: float,
                 soft: bool, keep_trace: bool) -> tuple[torch.Tensor, "torch.Tensor | None", torch.Tensor]:
    """The neuron's time loop over x_seq [T, B, ...] from membrane ``v`` (updated in place),
    without autograd: in-place updates into preallocated outputs, every spike exactly
    ``(v - th) >= 0``, the reset giving the reference loop's numbers bit for bit for spikes in
    {0, 1}. Returns (spikes, pre-spike membrane [T, B, ...] or None, final v)."""
    spikes = torch.empty_like(x_seq)
    mems = torch.empty_like(x_seq) if keep_trace else None
    for t in range(x_seq.shape[0]):
        if leak != 1.0:
            if rest:
                v.sub_(rest).mul_(leak).add_(rest)
            else:
                v.mul_(leak)
        v.add_(x_seq[t])
        if mems is not None:
            mems[t].copy_(v)
        fired = (v - threshold) >= 0
        spikes[t].copy_(fired)
        if soft:
            v.sub_(spikes[t], alpha=threshold)
        else:
            v.masked_fill_(fired, v_reset)
    return spikes, mems, v


def run_from_rest(x_seq: torch.Tensor, threshold: float, leak: float, rest: float, v_reset: float, soft: bool,
                  keep_trace: bool) -> tuple[torch.Tensor, "torch.Tensor | None", torch.Tensor]:
    """The neuron's time loop over x_seq [T, B, ...] from rest, without autograd: the compiled
    CPU kernel's loop when it is enabled for this tensor, else :func:`run_in_place` (the same
    values bit for bit). Returns (spikes, pre-spike membrane or None, final v)."""
    if cpu_kernel.usable_forward(x_seq):
        spikes, u, v = cpu_kernel.forward(x_seq, threshold, leak, rest, v_reset, soft)
        return spikes, (u if keep_trace else None), v
    return run_in_place(x_seq, torch.full_like(x_seq[0], rest), threshold, leak, rest, v_reset, soft, keep_trace)


class FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, threshold: float, leak: float, rest: float, v_reset: float,
                soft: bool, detach_reset: bool, grad_fn: GradFn, param: float, scale: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.kernel = cpu_kernel.usable(x_seq, grad_fn)  # the backward's loop (it needs the surrogate too)
        spikes, u, v = run_from_rest(x_seq, threshold, leak, rest, v_reset, soft, keep_trace=True)
        ctx.save_for_backward(u)
        ctx.settings = (threshold, leak, v_reset, soft, detach_reset, grad_fn, param, scale)
        return spikes, v

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes: torch.Tensor, g_v: torch.Tensor):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        threshold, leak, v_reset, soft, detach_reset, grad_fn, param, scale = ctx.settings
        if ctx.kernel:
            gx = cpu_kernel.backward(g_spikes, g_v, u, threshold, leak, v_reset, soft, detach_reset, grad_fn,
                                     param, scale)
            return gx, None, None, None, None, None, None, None, None, None
        gx = torch.empty_like(u)
        gv = g_v
        # step by step, not all T at once: one step's tensors stay in cache (measured faster on CPU)
        for t in range(u.shape[0] - 1, -1, -1):
            ut, gu = u[t], gx[t]
            sg = grad_fn(ut - threshold, param)
            if scale != 1.0:
                sg.mul_(scale)
            if g_spikes is not None:
                torch.mul(g_spikes[t], sg, out=gu)  # dL/ds_t sg_t
            else:
                gu.zero_()
            if gv is not None:  # + dL/dv_t dv_t/du_t
                if soft:
                    gu.add_(gv if detach_reset else gv * (1.0 - threshold * sg))
                else:
                    fired = ut >= threshold
                    gu.add_(gv.masked_fill(fired, 0.0))
                    if not detach_reset:
                        gu.add_((v_reset - ut).mul_(sg).mul_(gv))
            gv = gu * leak if leak != 1.0 else gu
        return gx, None, None, None, None, None, None, None, None, None
