"""Bar charts of per-operation gradient statistics, models side by side.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change),
so plotting works headless and never disturbs a user's interactive session.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .sparsity import SparsityReport

METRICS = {
    # metric: (y label, log scale, has input-pixel bar)
    "in_zero_frac": ("fraction of exactly-zero entries\nof the gradient w.r.t. the op's input", False, True),
    "out_zero_frac": ("fraction of exactly-zero entries\nof the gradient w.r.t. the op's output", False, False),
    "in_norm": ("L2 norm of the gradient\nw.r.t. the op's input (log scale)", True, True),
    "out_norm": ("L2 norm of the gradient\nw.r.t. the op's output (log scale)", True, False),
    "weight_density": ("fraction of non-zero entries\nof the weight gradient", False, False),
}

_TITLES = {
    "in_zero_frac": "Gradient sparsity at each operation's input",
    "out_zero_frac": "Gradient sparsity at each operation's output",
    "in_norm": "Gradient norm at each operation's input",
    "out_norm": "Gradient norm at each operation's output",
    "weight_density": "Weight-gradient density per layer",
}

_SOURCE_TEXT = {"attack": "loss of the first FGSM step, eval mode", "train": "training loss, train mode"}


def _aligned_ops(reports: dict[str, SparsityReport], metric: str) -> list[str]:
    """Union of op names, in the network order of the first report where each appears."""
    names: list[str] = []
    for rep in reports.values():
        pos = 0
        for r in rep.rows:
            if metric == "weight_density" and r.weight_density is None:
                continue
            if r.name in names:
                pos = names.index(r.name) + 1
            else:
                names.insert(pos, r.name)
                pos += 1
    return names


def plot_sparsity_comparison(reports: dict[str, SparsityReport], path, metric: str = "in_zero_frac",
                             title: str | None = None) -> Path:
    """Grouped bar chart of ``metric`` per operation, one bar colour per model
    (``reports`` maps a legend label, e.g. "max pooling", to its report), error bars =
    standard error over samples. Ops are aligned by name; the x label shows name and kind
    (e.g. "stem.3\\nmaxpool | avgpool" where the models differ). Zero-fraction metrics
    include the input pixels as the first group. Norms use a log axis. Writes a PNG and
    returns its path."""
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not reports:
        raise ConfigError("nothing to plot: pass at least one sparsity report")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ylabel, log, with_pixels = METRICS[metric]
    names = _aligned_ops(reports, metric)
    groups = (["input pixels"] if with_pixels else []) + names
    labels = []
    if with_pixels:
        labels.append("input pixels")
    for name in names:
        kinds = []
        for rep in reports.values():
            for r in rep.rows:
                if r.name == name and r.kind not in kinds:
                    kinds.append(r.kind)
        labels.append(f"{name}\n{' | '.join(kinds)}")

    n_models = len(reports)
    width = 0.8 / n_models
    fig = Figure(figsize=(max(8.0, 0.32 * len(groups) * max(2, n_models) / 2 + 2), 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(groups))
    positive_min = math.inf
    for i, (label, rep) in enumerate(reports.items()):
        by_name = {r.name: r for r in rep.rows}
        vals, errs = [], []
        if with_pixels:
            if metric == "in_zero_frac":
                vals.append(rep.input_zero_frac)
                errs.append(rep.input_zero_frac_se)
            else:
                vals.append(rep.input_norm)
                errs.append(rep.input_norm_se)
        for name in names:
            r = by_name.get(name)
            if r is None:
                vals.append(math.nan)
                errs.append(0.0)
                continue
            v = getattr(r, metric)
            vals.append(math.nan if v is None else v)
            se = getattr(r, metric + "_se", 0.0)
            errs.append(0.0 if se is None or not math.isfinite(se) else se)
        v = np.asarray(vals, dtype=float)
        e = np.asarray(errs, dtype=float)
        if log:
            pos = v[np.isfinite(v) & (v > 0)]
            if pos.size:
                positive_min = min(positive_min, float(pos.min()))
            # keep the lower error bar above zero on a log axis
            e_low = np.where(np.isfinite(v), np.minimum(e, v * 0.999), 0.0)
            yerr = np.vstack([e_low, e])
        else:
            yerr = e
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(v, nan=0.0), width, yerr=yerr, capsize=1.5,
               label=f"{label} (n={rep.n_samples})", error_kw={"elinewidth": 0.7})
    if log:
        ax.set_yscale("log", nonpositive="clip")
        if math.isfinite(positive_min):
            ax.set_ylim(bottom=positive_min / 3)
    elif metric != "in_norm":
        ax.set_ylim(0, 1.05)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("operation in network order (name, kind)")
    ax.set_ylabel(ylabel)
    sources = sorted({rep.source for rep in reports.values()})
    sub = "; ".join(_SOURCE_TEXT.get(s, s) for s in sources)
    ax.set_title(title or f"{_TITLES[metric]}\n(gradient of the {sub}; mean ± SE over samples)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_sparsity_figures(reports: dict[str, SparsityReport], folder, prefix: str = "sparsity",
                          metrics=("in_zero_frac", "out_zero_frac", "in_norm", "out_norm", "weight_density")
                          ) -> dict[str, Path]:
    """Write one comparison PNG per metric into ``folder``; returns {metric: path}."""
    folder = Path(folder)
    return {m: plot_sparsity_comparison(reports, folder / f"{prefix}_{m}.png", metric=m) for m in metrics}
