"""Matplotlib figures of the report, returned as PNG bytes.

Uses the object API with an Agg canvas (no pyplot, no global backend switch), so it works
headless and leaves any interactive session alone. Every function takes plain numbers or
typed rows (no study dict) and returns ``None`` when there is nothing to draw. Figures are ~8-10 inches wide
at 110 dpi, so a PNG is typically 40-120 kB and the HTML report stays small.

Accuracies are drawn in percent; each model keeps its colour across all figures
(:func:`model_colors`), protocols are told apart by line style and marker.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..analysis.sparsity import OpRow

DPI = 110

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_LINESTYLES = ["-", "--", ":", "-."]


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def model_colors(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour per model label (tab10, then tab20 for many models)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: _hex(cmap(i % cmap.N)) for i, lab in enumerate(labels)}


def _hex(rgba) -> str:
    return "#" + "".join(f"{int(round(255 * c)):02x}" for c in rgba[:3])


def style_for(index: int) -> tuple[str, str]:
    """(line style, marker) of the index-th protocol."""
    return _LINESTYLES[index % len(_LINESTYLES)], _MARKERS[index % len(_MARKERS)]


# -- training curves ---------------------------------------------------------------------
def training_curves(curves: dict[str, list[dict]], colors: dict[str, str]) -> Optional[bytes]:
    """Per model, ``[{"epoch", "train_loss", "test_accuracy" (fraction)}, ...]`` -> two panels:
    training loss and test accuracy (%) per epoch."""
    usable = {lab: rows for lab, rows in curves.items() if rows}
    if not usable:
        return None
    fig, (ax_loss, ax_acc) = _figure(10, 4, ncols=2)
    drew = False
    for lab, rows in usable.items():
        ep = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
        for ax, key, scale in ((ax_loss, "train_loss", 1.0), (ax_acc, "test_accuracy", 100.0)):
            pts = [(e, r.get(key)) for e, r in zip(ep, rows) if _finite(r.get(key)) and _finite(e)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, [scale * y for y in ys], marker="o", ms=3, color=colors.get(lab), label=lab)
                drew = True
    if not drew:
        return None
    ax_loss.set_title("Training loss per epoch")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_acc.set_title("Test accuracy per epoch")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _png(fig)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- epsilon curves ----------------------------------------------------------------------
@dataclass
class Curve:
    label: str                 # legend text, e.g. "max-pool · reliable"
    color: str
    linestyle: str
    marker: str
    eps: list[float]           # in the threat model's units (scaled for the axis by ``scale``)
    value: list[float]         # robust accuracy, fractions
    lo: list[Optional[float]]  # 95 % interval, fractions (None: unknown)
    hi: list[Optional[float]]


def eps_curves(curves: list[Curve], xlabel: str, scale: float, title: str) -> Optional[bytes]:
    """Robust accuracy (%) against eps, one line per model x protocol, 95 % CI bands."""
    curves = [c for c in curves if c.eps]
    if not curves:
        return None
    fig, (ax,) = _figure(8.5, 5)
    for c in curves:
        order = np.argsort(c.eps)
        x = np.asarray(c.eps, dtype=float)[order] * scale
        y = 100 * np.asarray(c.value, dtype=float)[order]
        ax.plot(x, y, linestyle=c.linestyle, marker=c.marker, ms=4, color=c.color, label=c.label)
        lo = [c.lo[i] for i in order]
        hi = [c.hi[i] for i in order]
        if all(v is not None for v in lo + hi):
            ax.fill_between(x, 100 * np.asarray(lo, float), 100 * np.asarray(hi, float), color=c.color, alpha=0.13,
                            linewidth=0)
    ax.set_ylim(-2, 102)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(title + "\n(shaded: 95 % Wilson interval; ε = 0 is clean accuracy)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


# -- per-operation sparsity --------------------------------------------------------------
SPARSITY_METRICS = {
    # metric: (title, y label, log axis, has an input-pixel bar)
    "in_zero_frac": ("Zero-gradient fraction at each operation's input",
                     "fraction of exactly-zero gradient entries (%)", False, True),
    "in_norm": ("Gradient norm at each operation's input",
                "L2 norm of the gradient (log scale)", True, True),
    "weight_density": ("Weight-gradient density per layer",
                       "non-zero entries of the weight gradient (%)", False, False),
}


@dataclass
class OpSeries:
    label: str
    color: str
    n_samples: Optional[int]
    ops: list[OpRow]                # per-operation rows: name, kind, <metric>, <metric>_se
    pixel: Optional[tuple[float, Optional[float]]] = None  # (value, se) of the input pixels


def _aligned_names(series: list[OpSeries], metric: str) -> list[str]:
    """Union of op names, each inserted after the op that precedes it in its own model."""
    names: list[str] = []
    for s in series:
        pos = 0
        for r in s.ops:
            if not _finite(getattr(r, metric)):
                continue
            name = r.name
            if name in names:
                pos = names.index(name) + 1
            else:
                names.insert(pos, name)
                pos += 1
    return names


def _common_prefix(names: list[str]) -> str:
    """The dotted module prefix all names share (e.g. "backbone."), so tick labels stay short."""
    if len(names) < 2:
        return ""
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if len(common) >= min(len(p) for p in parts):  # never strip a whole name
        common = common[:-1]
    return ".".join(common) + "." if common else ""


def sparsity_bars(series: list[OpSeries], metric: str, subtitle: str) -> Optional[bytes]:
    """Grouped bars of ``metric`` per operation (network order), models side by side, error
    bars = standard error over samples. Zero fractions and densities in %."""
    title, ylabel, log, with_pixels = SPARSITY_METRICS[metric]
    names = _aligned_names(series, metric)
    if not names and not (with_pixels and any(s.pixel for s in series)):
        return None
    groups = (["input pixels"] if with_pixels else []) + names
    labels = list(groups)
    prefix = _common_prefix(names)
    for i, name in enumerate(names):
        kinds = []
        for s in series:
            for r in s.ops:
                k = r.kind
                if r.name == name and isinstance(k, str) and k not in kinds:
                    kinds.append(k)
        short = name[len(prefix):]
        labels[i + (1 if with_pixels else 0)] = f"{short} ({'|'.join(kinds)})" if kinds else short
    scale = 1.0 if log else 100.0
    n = len(series)
    width = 0.8 / n
    fig, (ax,) = _figure(min(18.0, max(8.0, 0.22 * len(groups) * max(n, 2) + 2)), 5.5)
    x = np.arange(len(groups))
    smallest = math.inf
    for i, s in enumerate(series):
        by_name = {r.name: r for r in s.ops}
        vals, errs = [], []
        if with_pixels:
            v, se = s.pixel if s.pixel else (math.nan, None)
            vals.append(v if _finite(v) else math.nan)
            errs.append(abs(se) if _finite(se) else 0.0)
        for name in names:
            r = by_name.get(name)
            v, se = (getattr(r, metric), getattr(r, metric + "_se", None)) if r is not None else (None, None)
            vals.append(v if _finite(v) else math.nan)
            errs.append(abs(se) if _finite(se) else 0.0)
        v = np.asarray(vals, float) * scale
        e = np.asarray(errs, float) * scale
        if log:
            pos = v[np.isfinite(v) & (v > 0)]
            if pos.size:
                smallest = min(smallest, float(pos.min()))
            yerr = np.vstack([np.where(np.isfinite(v), np.minimum(e, v * 0.999), 0.0), e])
        else:
            yerr = e
        lab = s.label + (f" (n={s.n_samples})" if s.n_samples else "")
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(v, nan=0.0), width, yerr=yerr, capsize=1.5,
               color=s.color, label=lab, error_kw={"elinewidth": 0.7})
    if log:
        ax.set_yscale("log", nonpositive="clip")  # bars start at 0: clip so they still draw
        if math.isfinite(smallest):
            ax.set_ylim(bottom=smallest / 3)
    else:
        ax.set_ylim(0, 105)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("operation in network order (name, kind)"
                  + (f"; names without the prefix '{prefix}'" if prefix else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n({subtitle}; mean ± SE over samples)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # outside: never hides a bar
    return _png(fig)


# -- trade-off scatter -------------------------------------------------------------------
@dataclass
class TradeoffPoint:
    label: str                      # legend text
    color: str
    marker: str
    clean: tuple[float, Optional[float], Optional[float]]   # value, lo, hi (fractions)
    robust: tuple[float, Optional[float], Optional[float]]
    seeds: list = field(default_factory=list)   # (clean, robust) of each training seed, drawn as dots


def tradeoff(points: list[TradeoffPoint], title: str) -> Optional[bytes]:
    """Clean accuracy (x, %) vs robust accuracy (y, %), one point per model x protocol with
    95 % interval error bars (Wilson for one seed, across seeds for several, each seed then a
    small dot). Labels are in the legend, so they never overlap."""
    if not points:
        return None
    fig, (ax,) = _figure(8, 5.5)

    def err(t):
        v, lo, hi = t
        if lo is None or hi is None:
            return None
        return [[100 * max(v - lo, 0.0)], [100 * max(hi - v, 0.0)]]

    for p in points:
        ax.errorbar([100 * p.clean[0]], [100 * p.robust[0]], xerr=err(p.clean), yerr=err(p.robust), fmt=p.marker,
                    color=p.color, ms=8, capsize=3, label=p.label)
        if p.seeds:
            ax.scatter([100 * c for c, _ in p.seeds], [100 * r for _, r in p.seeds], s=14, color=p.color,
                       marker=p.marker, alpha=0.45, edgecolors="none")
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(title + "\n(error bars: 95 % intervals; small dots: one training seed each; up and right is "
                         "better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


# -- per-seed values -------------------------------------------------------------------
@dataclass
class SeedColumn:
    """One model in a per-seed panel: its per-seed values (fractions), their mean and the
    across-seed 95 % interval (with one seed: that seed's own interval; None: unknown)."""

    label: str
    color: str
    values: list[float]
    mean: float
    lo: Optional[float]
    hi: Optional[float]


@dataclass
class SeedPanel:
    title: str                      # e.g. "clean accuracy", "robust accuracy, reliable"
    columns: list[SeedColumn]


def seed_dots(panels: list[SeedPanel], title: str) -> Optional[bytes]:
    """One panel per quantity (%): for each model its per-seed values as dots on the left and
    their mean as a larger marker on the right with the across-seed 95 % interval as error bar,
    so the spread between training seeds is visible beside the mean."""
    panels = [p for p in panels if p.columns]
    if not panels:
        return None
    width = min(16.0, 1.2 + sum(1.0 + 0.9 * len(p.columns) for p in panels))
    fig, axes = _figure(max(width, 6.0), 4.6, len(panels))
    for ax, p in zip(axes, panels):
        for i, c in enumerate(p.columns):
            n = len(c.values)
            jitter = np.linspace(-0.08, 0.08, n) if n > 1 else np.zeros(1)
            ax.scatter(i - 0.15 + jitter, [100 * v for v in c.values], s=22, color=c.color, alpha=0.75,
                       edgecolors="none", label="one training seed" if i == 0 else None)
            err = None
            if c.lo is not None and c.hi is not None:
                err = [[100 * max(c.mean - c.lo, 0.0)], [100 * max(c.hi - c.mean, 0.0)]]
            ax.errorbar([i + 0.15], [100 * c.mean], yerr=err, fmt="D", ms=7, color=c.color, capsize=4,
                        label="mean, 95 % interval" if i == 0 else None)
        ax.set_xticks(range(len(p.columns)))
        ax.set_xticklabels([c.label for c in p.columns], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(p.columns) - 0.4)
        ax.set_title(p.title, fontsize=9)
        ax.set_ylabel("%")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


# -- vulnerability ---------------------------------------------------------------------
@dataclass
class VulnerabilitySeries:
    label: str
    color: str
    bounds: list[float]             # per sample sqrt(2 L0)
    ratios: list[float]             # per sample rho_adv / rho_rand
    model_bound: Optional[float]    # sqrt(2 max L0)
    model_ratio: Optional[float]    # rho_adv / rho_rand of the means


def vulnerability(series: list[VulnerabilitySeries], title: str) -> Optional[bytes]:
    """Per-sample ratio adv/rand against its bound sqrt(2 L0) (log-log), with the line
    ratio = bound (points must lie on or below it) and each model's overall ratio (star)."""
    series = [s for s in series if s.ratios or (_finite(s.model_ratio) and _finite(s.model_bound))]
    if not series:
        return None
    fig, (ax,) = _figure(8, 5.5)
    allv = []
    for s in series:
        pairs = [(b, r) for b, r in zip(s.bounds, s.ratios) if b > 0 and r > 0]
        if pairs:
            b, r = zip(*pairs)
            ax.scatter(b, r, s=12, alpha=0.5, color=s.color, label=f"{s.label}: per sample")
            allv.extend(b)
            allv.extend(r)
        if _finite(s.model_ratio) and _finite(s.model_bound) and s.model_ratio > 0 and s.model_bound > 0:
            ax.scatter([s.model_bound], [s.model_ratio], s=160, marker="*", color=s.color, edgecolor="black",
                       label=f"{s.label}: ρ_adv/ρ_rand vs √(2·max L0)")
            allv.extend([s.model_bound, s.model_ratio])
    if not allv:
        return None
    lo, hi = min(allv) / 2, max(allv) * 2
    ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="bound: ratio = √(2·L0)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bound √(2·L0)  (L0 = non-zero entries of ∇ₓ f_y)")
    ax.set_ylabel("ρ_adv / ρ_rand (adversarial ÷ random change of f_y)")
    ax.set_title(title + "\n(the first-order bound holds where points lie on or below the dashed line)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)
