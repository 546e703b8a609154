"""Gradient analysis: per-operation gradient sparsity (seed 000) and random vs
adversarial vulnerability with its sparsity bound (Liu et al. 2024)."""

from .plots import plot_sparsity_comparison, plot_sparsity_figures
from .results import VulnerabilityResult
from .sparsity import OP_KINDS, OpRow, SparsityReport, op_gradient_stats, op_kind
from .vulnerability import VulnerabilityReport, vulnerability

__all__ = [
    "OP_KINDS", "OpRow", "SparsityReport", "op_gradient_stats", "op_kind",
    "plot_sparsity_comparison", "plot_sparsity_figures", "VulnerabilityReport", "VulnerabilityResult",
    "vulnerability",
]
