"""A compiled CPU kernel for the fused neuron (:mod:`snnrobust.spiking.fused`): the IF/LIF time
loop and its backward through time, each one pass over memory per step with the surrogate
derivative computed inside, parallel over neurons. Opt-in: :func:`enable` builds it with the
system's C++ compiler (``torch.utils.cpp_extension``, about a minute the first time, then cached
by torch) and routes :class:`~snnrobust.spiking.fused.FusedNeuron` on float32 CPU tensors
through it; without it everything runs in torch as before.

Same contract as the torch path: forward values (spikes, membrane) are bit for bit the reference
loop's (the kernel repeats its operations in its order: leak, add the input, fire on
``u - th >= 0``, reset), gradients equal it to float rounding. Compiled without fast-math, so the
floating-point operations are IEEE's. Every surrogate kind of :mod:`~snnrobust.spiking.surrogates`
is computed in the kernel from its formula there. Each loop is instantiated per setting (surrogate kind,
reset, detach, leak) so that it is straight-line code the compiler vectorizes: that made the backward
about 6x faster than one loop with the settings tested inside it (same results bit for bit).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Optional

import torch

from ..errors import ConfigError

#: surrogate kinds the kernel computes, by their code in the C++ source
KIND_CODES = {"atan": 0, "sigmoid": 1, "fast-sigmoid": 2, "triangle": 3, "rectangle": 4, "gaussian": 5,
              "exponential": 6, "straight-through": 7}

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

template <int K>
static inline float surrogate(float x, float p) {
  if (K == 0) { float k = (float)M_PI * p * x / 2.f; return (p / 2.f) / (1.f + k * k); }
  if (K == 1) { float s = 1.f / (1.f + std::exp(-p * x)); return p * s * (1.f - s); }
  if (K == 2) { float d = 1.f + p * std::fabs(x); return 1.f / (d * d); }
  if (K == 3) { float r = 1.f - std::fabs(x) / p; return (r > 0.f ? r : 0.f) / p; }
  if (K == 4) return (std::fabs(x) < p / 2.f ? 1.f : 0.f) / p;
  if (K == 5) return std::exp(-(x * x) / (2.f * p * p)) / ((float)std::sqrt(2.0 * M_PI) * p);
  if (K == 6) return (p / 2.f) * std::exp(-p * std::fabs(x));
  return 1.f;
}

// all T steps of the forward for neurons [b, e): straight-line code per setting, so it vectorizes
template <bool LEAKY, bool HAS_REST, bool SOFT>
static void forward_steps(const float* __restrict__ xp, float* __restrict__ sp, float* __restrict__ up,
                          float* __restrict__ vp, int64_t T, int64_t N, int64_t b,
                          int64_t e, float fth, float fl, float fr, float fre) {
  for (int64_t t = 0; t < T; t++) {
    const float* __restrict__ xt = xp + t * N;
    float* __restrict__ ut = up + t * N;
    float* __restrict__ st = sp + t * N;
    for (int64_t i = b; i < e; i++) {
      float w = vp[i];
      if (LEAKY) w = HAS_REST ? (w - fr) * fl + fr : w * fl;
      w = w + xt[i];
      ut[i] = w;
      float f = (w - fth) >= 0.f ? 1.f : 0.f;
      st[i] = f;
      vp[i] = SOFT ? w - fth * f : (f > 0.f ? fre : w);
    }
  }
}

// x [T, N] -> (spikes [T, N], pre-spike membrane u [T, N], final v [N]); v starts at `rest`
std::vector<torch::Tensor> forward(torch::Tensor x, double th, double leak, double rest, double v_reset,
                                   bool soft) {
  const int64_t T = x.size(0), N = x.numel() / T;
  auto s = torch::empty_like(x), u = torch::empty_like(x);
  auto v = torch::full({N}, rest, x.options());
  const float* xp = x.data_ptr<float>();
  float *sp = s.data_ptr<float>(), *up = u.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float fth = th, fl = leak, fr = rest, fre = v_reset;
  const bool leaky = leak != 1.0, has_rest = rest != 0.0;
  at::parallel_for(0, N, 4096, [&](int64_t b, int64_t e) {
#define SNN_FWD(L, R, S) forward_steps<L, R, S>(xp, sp, up, vp, T, N, b, e, fth, fl, fr, fre)
    if (!leaky) { if (soft) SNN_FWD(false, false, true); else SNN_FWD(false, false, false); }
    else if (has_rest) { if (soft) SNN_FWD(true, true, true); else SNN_FWD(true, true, false); }
    else { if (soft) SNN_FWD(true, false, true); else SNN_FWD(true, false, false); }
#undef SNN_FWD
  });
  return {s, u, v};
}

template <int K, bool SOFT, bool DETACH, bool GS>
static void backward_steps(const float* __restrict__ gsp, const float* __restrict__ up,
                           float* __restrict__ gxp, float* __restrict__ gv, int64_t T, int64_t N,
                           int64_t b, int64_t e, float fth, float fl, float fre, float fp, float fsc) {
  for (int64_t t = T - 1; t >= 0; t--) {
    const float* ut = up + t * N;
    float* gxt = gxp + t * N;
    const float* gst = GS ? gsp + t * N : nullptr;
    for (int64_t i = b; i < e; i++) {
      float w = ut[i];
      float sg = surrogate<K>(w - fth, fp) * fsc;
      float g = GS ? gst[i] * sg : 0.f;
      float d = gv[i - b];
      if (SOFT) g += DETACH ? d : d * (1.f - fth * sg);
      else {
        g += (w >= fth) ? 0.f : d;
        if (!DETACH) g += (fre - w) * sg * d;
      }
      gxt[i] = g;
      gv[i - b] = fl * g;
    }
  }
}

template <int K>
static void backward_kind(bool soft, bool detach, const float* gsp, const float* up, float* gxp, float* gv,
                          int64_t T, int64_t N, int64_t b, int64_t e, float fth, float fl, float fre, float fp,
                          float fsc) {
#define SNN_BWD(S, D, G) backward_steps<K, S, D, G>(gsp, up, gxp, gv, T, N, b, e, fth, fl, fre, fp, fsc)
  if (gsp) {
    if (soft) { if (detach) SNN_BWD(true, true, true); else SNN_BWD(true, false, true); }
    else { if (detach) SNN_BWD(false, true, true); else SNN_BWD(false, false, true); }
  } else {
    if (soft) { if (detach) SNN_BWD(true, true, false); else SNN_BWD(true, false, false); }
    else { if (detach) SNN_BWD(false, true, false); else SNN_BWD(false, false, false); }
  }
#undef SNN_BWD
}

// dL/dx [T, N] from dL/ds [T, N] (or none), dL/dv_T [N] (or none) and u [T, N]
torch::Tensor backward(c10::optional<torch::Tensor> gs, c10::optional<torch::Tensor> gv_last, torch::Tensor u,
                       double th, double leak, double v_reset, bool soft, bool detach, int64_t kind,
                       double param, double scale) {
  const int64_t T = u.size(0), N = u.numel() / T;
  auto gx = torch::empty_like(u);
  const float* gsp = gs.has_value() ? gs->data_ptr<float>() : nullptr;
  const float* gvp = gv_last.has_value() ? gv_last->data_ptr<float>() : nullptr;
  const float* up = u.data_ptr<float>();
  float* gxp = gx.data_ptr<float>();
  const float fth = th, fl = leak, fre = v_reset, fp = param, fsc = scale;
  const int k = (int)kind;
  at::parallel_for(0, N, 4096, [&](int64_t b, int64_t e) {
    std::vector<float> gv(e - b, 0.f);
    if (gvp) for (int64_t i = b; i < e; i++) gv[i - b] = gvp[i];
    float* g = gv.data();
    switch (k) {
      case 0: backward_kind<0>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      case 1: backward_kind<1>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      case 2: backward_kind<2>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      case 3: backward_kind<3>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      case 4: backward_kind<4>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      case 5: backward_kind<5>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      case 6: backward_kind<6>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
      default: backward_kind<7>(soft, detach, gsp, up, gxp, g, T, N, b, e, fth, fl, fre, fp, fsc); break;
    }
  });
  return gx;
}
"""

_ENABLED = False


@lru_cache(maxsize=1)
def _module() -> Any:
    from torch.utils.cpp_extension import load_inline

    try:
        return load_inline("snnrobust_neuron_cpu", cpp_sources=_SOURCE, functions=["forward", "backward"],
                           extra_cflags=["-O3"], verbose=False)
    except Exception as e:  # no compiler, no ninja, a failed build: say so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the CPU neuron kernel could not be built ({first[:160]}); it needs a C++ compiler "
                          "and ninja (pip install ninja); run without it") from None


def enable(on: bool = True) -> None:
    """Build the kernel (once per machine and torch version; about a minute) and use it for fused
    neurons on float32 CPU tensors; ``on=False`` goes back to the torch path."""
    global _ENABLED
    if on:
        _module()
    _ENABLED = bool(on)


def enabled() -> bool:
    return _ENABLED


@contextmanager
def kernel_used(on: bool = True) -> Iterator[None]:
    """:func:`enable` for a ``with`` block (``on=False``: a no-op); the previous setting comes back."""
    if not on:
        yield
        return
    before = _ENABLED
    enable(True)
    try:
        yield
    finally:
        enable(before)


def kind_code(grad_fn: Any) -> Optional[int]:
    """The kernel's code for the surrogate whose derivative is ``grad_fn`` (None: not one it has)."""
    from .surrogates import SURROGATES

    for name, entry in SURROGATES.items():
        if entry.grad is grad_fn:
            return KIND_CODES.get(name)
    return None


def usable(x: torch.Tensor, grad_fn: Any) -> bool:
    """Whether the kernel takes this call: enabled, float32 on the CPU, a surrogate it knows."""
    return _ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and kind_code(grad_fn) is not None


def usable_forward(x: torch.Tensor) -> bool:
    """Whether the kernel takes a forward-only call (no surrogate needed): enabled, float32 on the CPU."""
    return _ENABLED and x.device.type == "cpu" and x.dtype == torch.float32


def dense_order(t: torch.Tensor) -> list[int]:
    """A dim order, time first, in which ``t``'s memory is dense (``t.permute(order)`` is
    contiguous): the identity for a contiguous tensor, [0, 1, 3, 4, 2] for [T, B, C, H, W] with
    channels-last steps; None when there is none (the caller copies to contiguous)."""
    order = list(range(t.dim()))
    if t.is_contiguous():
        return order
    order = [0] + sorted(range(1, t.dim()), key=lambda d: -t.stride(d))
    return order if t.permute(order).is_contiguous() else None  # type: ignore[return-value]


def _inverse(order: list[int]) -> list[int]:
    inv = [0] * len(order)
    for i, d in enumerate(order):
        inv[d] = i
    return inv


def forward(x_seq: torch.Tensor, threshold: float, leak: float, rest: float, v_reset: float,
            soft: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(spikes, pre-spike membrane, final v) of x_seq [T, B, ...], the neuron starting at rest.
    The kernel is elementwise within a step, so it runs on the input's own memory layout (e.g.
    channels-last steps) and gives its outputs that layout, without a copy."""
    x = x_seq.detach()
    order = dense_order(x)
    if order is None:
        x, order = x.contiguous(), list(range(x.dim()))
    xd = x.permute(order)
    s, u, v = _module().forward(xd.reshape(xd.shape[0], -1), threshold, leak, rest, v_reset, soft)
    inv = _inverse(order)
    step_inv = _inverse([d - 1 for d in order[1:]])
    return (s.view(xd.shape).permute(inv), u.view(xd.shape).permute(inv),
            v.view(xd.shape[1:]).permute(step_inv))


def backward(g_spikes: Optional[torch.Tensor], g_v: Optional[torch.Tensor], u: torch.Tensor, threshold: float,
             leak: float, v_reset: float, soft: bool, detach_reset: bool, grad_fn: Any, param: float,
             scale: float) -> torch.Tensor:
    """dL/dx [T, B, ...] (see :mod:`snnrobust.spiking.fused` for the recurrence), in the memory
    layout of the saved membrane ``u`` (the incoming gradients are brought to it)."""
    order = dense_order(u)
    if order is None:
        u, order = u.contiguous(), list(range(u.dim()))
    ud = u.permute(order)
    T = ud.shape[0]
    gs = None if g_spikes is None else g_spikes.permute(order).contiguous().reshape(T, -1)
    gv = None if g_v is None else g_v.permute([d - 1 for d in order[1:]]).contiguous().reshape(-1)
    code = kind_code(grad_fn)
    gx = _module().backward(gs, gv, ud.reshape(T, -1), threshold, leak, v_reset, soft, detach_reset, code,
                            float(param), float(scale))
    return gx.view(ud.shape).permute(_inverse(order))
