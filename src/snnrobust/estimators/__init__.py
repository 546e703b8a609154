"""Gradient estimators: the attacker's choice of how to differentiate a trained SNN.

A spike is a step function, so an input gradient of an SNN only exists through some
estimator, and which one the defender happened to train with says nothing about which one
breaks the model. Every estimator here is applied at attack time to any trained model by
:meth:`GradientEstimator.applied` (a context manager that swaps surrogates or sets
``neuron.estimator`` on every spiking neuron and restores them afterwards; weights are
never touched). Each one keeps the neuron's forward *exactly* (identical spikes); only the
backward changes.

Notation for one spiking layer: input currents x_t [T, B, ...], pre-spike membrane u_t,
spikes s_t = H(u_t - theta), incoming gradient g_t = dL/ds_t, leak factor lam (1 for IF).

==========  ==================================================================================
spec        backward
==========  ==================================================================================
bptt        exact BPTT through the model's own surrogate
bptt:K:P[:S]  BPTT with surrogate kind K, width/sharpness P, scale S from the registry
ste         BPTT with the straight-through surrogate (dH/du := 1)
bptr        Ding et al. 2022: dL/dx_t = g_t * [mean_t s_t > 0] (mask per neuron, same for all t)
rga[:g[:b[:tau]]]  Bu et al. 2023: rate function of xbar = mean_t x_t;
            dL/dx_t = f'(xbar) * mean_t g_t with f' = k/D on ((1-tau)D, b*D],
            g/D on [0, (1-tau)D], 0 elsewhere; k = (1 - g(1-tau)) / (b-1+tau), where
            D = theta - v_rest is the distance from rest to threshold (theta for soft
            reset or v_reset = 0). The rate function f(xbar) = integral_0^xbar f' rises to
            g(1-tau) at (1-tau)D and to exactly 1 spike/step at b*D, for every theta.
            Defaults g=0.2, b=2 (the authors' released code), tau = the neuron's leak factor
            (for constant input a neuron with decay tau fires iff xbar > (1-tau) D, so IF
            (tau=1) has no sub-threshold band and slope 1/(b D)).
            Why 1/D: with w = (v - v_rest)/D the dynamics become w <- tau w + x/D, fire at
            w >= 1, reset to 0 (hard) or by 1 (soft): the neuron with threshold theta and
            input x spikes exactly like one with threshold 1 and input x/D, so its rate is
            r_D(xbar) = r_1(xbar/D) and r_D' = r_1'(xbar/D)/D. The released code is written
            for D = 1 (g on [0, 1-tau], k on (1-tau, b]); both pieces scale by 1/D. Scaling
            only the slope (k/D next to an unscaled g) puts the integral at b*D at
            1 + g(1-tau)(D-1) (1.02 for D=2, tau=0.9; 0.95 for D=0.5, tau=0.5), and once
            g(1-tau)D > 1 (converted models, thresholds of 5-10) the band where the neuron
            is silent alone would integrate to more than 1 spike/step.
hart[:gamma]  Hao et al. 2024: dL/dx_t = (mean_t' g_t') * tri_gamma(u_t - theta) — the time-
            averaged incoming gradient, membrane recurrence detached
            (u_t = lam * v_{t-1}.detach() + x_t, so du_t/dx_t = 1), triangle surrogate
            tri_gamma(x) = max(0, 1 - |x|/gamma)/gamma; gamma default 1.0.
pdsg        Lun et al. 2025: BPTT with a Gaussian surrogate whose sigma = std of the layer's
            membrane potential u, computed in the forward per sample (over all steps and
            neurons of the layer, population std) so that a sample's gradient does not depend
            on which other samples share its batch.
assg[:A[:r[:b]]]  Wang et al. 2025: BPTT with the ATan surrogate and per-neuron, per-step sharpness
            alpha = a / (M + r D + 1e-4), a = 2 tan(pi A / 2) / pi, where over successive
            forward passes (attack iterations) M <- b M + (1-b) |u - theta| and
            D <- b D + (1-b) ||u - theta| - M| (M already updated); first pass M = |u - theta|,
            D = 0. Defaults A = 0.4, r = 1, b = 0.9. State lives on the estimator object per neuron and
            is cleared by :meth:`GradientEstimator.reset` (call it at the start of each attack
            run; it is also re-initialized when the batch shape changes).
source-ann  BPDA for converted/hybrid SNNs: forward through the SNN, dL/dx = J_ann(x)^T dL/dl at
            the SNN's logits l, through the source ANN stored with the checkpoint (ann_source);
            see :mod:`snnrobust.estimators.source_ann` for why the loss gradient is taken there.
encoder-smooth[:w]  BPDA for phase coding: exact BPTT through the model's own surrogate, and through
            the encoder d code_t/dx := (code_t(x + w) - code_t(x - w)) / 2w instead of the
            straight-through 1 per bit (only bits a window of half-width w pixels can flip
            pass gradient); w default 0.025, the reliable suite uses eps / 4.
==========  ==================================================================================

With alpha = a / M the ATan surrogate puts mass A of its integral inside |u - theta| < M, so
ASSG's A is the fraction of the typical membrane spread that passes gradient.
"""

from .assg import ASSG
from .base import GradientEstimator, LayerEstimator, exact_forward
from .bptr import BPTR
from .bptt import BPTT, STE
from .encoder_smooth import EncoderSmooth
from .hart import HART
from .pdsg import PDSG
from .registry import ESTIMATOR_TYPES, ESTIMATORS, get_estimator
from .rga import RGA
from .source_ann import SourceANN, ann_from_source

__all__ = ["ASSG", "BPTR", "BPTT", "ESTIMATOR_TYPES", "ESTIMATORS", "EncoderSmooth", "GradientEstimator", "HART",
           "LayerEstimator",
           "PDSG", "RGA", "STE", "SourceANN", "ann_from_source", "exact_forward", "get_estimator"]
