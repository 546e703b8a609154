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
    series = []
    for label, rep in reports.items():
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
            v = None if r is None else getattr(r, metric)
            se = None if r is None else getattr(r, metric + "_se", 0.0)
            vals.append(math.nan if v is None else v)
            errs.append(0.0 if se is None or not math.isfinite(se) else se)
        series.append((f"{label} (n={rep.n_samples})", np.asarray(vals, dtype=float), np.asarray(errs, dtype=float)))
    floor = 0.0
    if log:
        pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for _, v, _ in series])
        floor = float(pos.min()) / 3 if pos.size else 1e-12
    for i, (label, v, e) in enumerate(series):
        h = np.nan_to_num(v, nan=0.0)
        if log:
            # bars rise from the axis floor (a log axis has no zero); zero norms stay at the floor
            h = np.maximum(h, floor)
            e_low = np.where(np.isfinite(v), np.minimum(e, np.maximum(h - floor, 0.0)), 0.0)
            yerr = np.vstack([e_low, e])
            ax.bar(x - 0.4 + width * (i + 0.5), h - floor, width, bottom=floor, yerr=yerr, capsize=1.5,
                   label=label, error_kw={"elinewidth": 0.7})
        else:
            ax.bar(x - 0.4 + width * (i + 0.5), h, width, yerr=e, capsize=1.5, label=label,
                   error_kw={"elinewidth": 0.7})
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
    elif metric != "in_norm":
        ax.set_ylim(0, 1.18)  # headroom for the legend above bars that reach 1
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("operation in network order (name, kind)")
    ax.set_ylabel(ylabel)
    sources = sorted({rep.source for rep in reports.values()})
    sub = "; ".join(_SOURCE_TEXT.get(s, s) for s in sources)
    spread = ("mean over batches of " + ", ".join(sorted({str(r.batch_size) for r in reports.values()}))
              if metric == "weight_density" else "mean ± SE over samples")
    ax.set_title(title or f"{_TITLES[metric]}\n(gradient of the {sub}; {spread})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=min(n_models, 4), framealpha=0.9)
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
