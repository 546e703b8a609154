"""How well a converted SNN reproduces its ANN: accuracy over T and error per layer.

For each T of a grid the SNN runs T steps (one simulation to the largest T; the first t
steps of it are exactly a t-step run, since the dynamics are causal and input steps are
independent) on the same images as the ANN, and the report gives

- clean accuracy of the ANN and of the SNN (95 % Wilson intervals), and the gap;
- per hidden layer l, the mean absolute error between the ANN's activation a_l and the
  SNN's estimate of it, rate_l * lambda_l: the layer's spikes per step averaged over the
  first T steps, times lambda_l = theta_1 * ... * theta_l (the product of the thresholds
  up to l, which puts the rate back into the ANN's units; see ``balance.py``). The mean is
  over every neuron of the layer and every image; ``rel_mae`` divides it by the mean ANN
  activation of the layer (zeros included), so layers of different scale compare.

Written as JSON and CSV (atomic writes) and a PNG in the style of ``analysis/plots.py``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..evaluation.metrics import wilson_interval
from ..io import atomic_write_text
from ..models import SpikingClassifier
from .balance import ann_activations
from .simulate import run_steps
from .structure import Stage


@dataclass
class ConversionReport:
    method: str
    encoder: str
    n_images: int
    timesteps: list[int]
    ann_correct: int
    snn_correct: list[int]          # per T of ``timesteps``
    layers: list[str]               # hidden (neuron) layers in forward order
    thresholds: list[float]
    layer_scale: list[float]        # lambda_l = theta_1 * ... * theta_l
    ann_mean: list[float]           # mean ANN activation per layer (zeros included)
    mae: list[list[float]]          # [T index][layer]: mean |a_l - rate_l * lambda_l|

    @property
    def ann_accuracy(self) -> float:
        return self.ann_correct / max(self.n_images, 1)

    def snn_accuracy(self, i: int) -> float:
        return self.snn_correct[i] / max(self.n_images, 1)

    def rel_mae(self, i: int, j: int) -> float:
        return self.mae[i][j] / self.ann_mean[j] if self.ann_mean[j] > 0 else float("nan")

    def accuracy_at(self, T: int) -> Optional[float]:
        return self.snn_accuracy(self.timesteps.index(T)) if T in self.timesteps else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ann_accuracy"] = self.ann_accuracy
        d["ann_ci95"] = list(wilson_interval(self.ann_correct, self.n_images))
        d["snn_accuracy"] = [self.snn_accuracy(i) for i in range(len(self.timesteps))]
        d["snn_ci95"] = [list(wilson_interval(c, self.n_images)) for c in self.snn_correct]
        d["rel_mae"] = [[self.rel_mae(i, j) for j in range(len(self.layers))] for i in range(len(self.timesteps))]
        d["mae_definition"] = ("mean over neurons and images of |a_l - rate_l * lambda_l|, rate_l = spikes per step "
                               "over the first T steps, lambda_l = product of thresholds up to layer l; "
                               "rel_mae = mae / mean ANN activation of the layer")
        return d

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["T", "ann_accuracy", "snn_accuracy", "gap", "layer", "threshold", "lambda", "ann_mean",
                    "mae", "rel_mae"])
        for i, T in enumerate(self.timesteps):
            for j, name in enumerate(self.layers):
                w.writerow([T, f"{self.ann_accuracy:.6g}", f"{self.snn_accuracy(i):.6g}",
                            f"{self.ann_accuracy - self.snn_accuracy(i):.6g}", name, f"{self.thresholds[j]:.6g}",
                            f"{self.layer_scale[j]:.6g}", f"{self.ann_mean[j]:.6g}", f"{self.mae[i][j]:.6g}",
                            f"{self.rel_mae(i, j):.6g}"])
        return buf.getvalue()

    def table(self) -> str:
        """Accuracy per T and, per layer, rel. MAE (MAE / mean ANN activation)."""
        short = [n.replace("features.", "f").replace("classifier.", "c") for n in self.layers]
        lines = [f"conversion ({self.method}, {self.encoder} input) on {self.n_images} test images: "
                 f"ANN accuracy {self.ann_accuracy:.4f}",
                 f"{'T':>6} {'SNN acc':>8} {'gap':>7}   rel. MAE per layer: " + " ".join(f"{s:>7}" for s in short)]
        for i, T in enumerate(self.timesteps):
            gap = self.ann_accuracy - self.snn_accuracy(i)
            lines.append(f"{T:>6} {self.snn_accuracy(i):>8.4f} {gap:>+7.4f}   {'':19}"
                         + " ".join(f"{self.rel_mae(i, j):>7.3f}" for j in range(len(self.layers))))
        lines.append("gap = ANN - SNN accuracy; rel. MAE = mean |a_l - rate_l * lambda_l| / mean a_l, "
                     "lambda_l = product of thresholds up to layer l")
        return "\n".join(lines)

    def write(self, folder: "str | Path", stem: str = "conversion") -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [atomic_write_text(folder / f"{stem}.json", json.dumps(self.to_dict(), indent=2) + "\n"),
                 atomic_write_text(folder / f"{stem}.csv", self.csv_text())]
        paths.append(self.plot(folder / f"{stem}.png"))
        return paths

    def plot(self, path: "str | Path") -> Path:
        """Left: clean accuracy vs T (SNN with 95 % intervals, ANN as a line). Right: rel. MAE
        per layer vs T. Written atomically as PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4.5), dpi=110)
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        ts = np.asarray(self.timesteps, dtype=float)
        acc = np.asarray([self.snn_accuracy(i) for i in range(len(ts))])
        ci = np.asarray([wilson_interval(c, self.n_images) for c in self.snn_correct])
        ax1.errorbar(ts, acc, yerr=[acc - ci[:, 0], ci[:, 1] - acc], marker="o", capsize=2, label="SNN (converted)")
        ax1.axhline(self.ann_accuracy, color="k", ls="--", lw=1, label=f"ANN ({self.ann_accuracy:.3f})")
        ax1.set_xscale("log", base=2)
        ax1.set_xlabel("timesteps T")
        ax1.set_ylabel(f"clean accuracy ({self.n_images} test images)")
        ax1.set_title(f"Accuracy vs T ({self.method}, {self.encoder} input)", fontsize=10)
        ax1.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        for j, name in enumerate(self.layers):
            ax2.plot(ts, [self.rel_mae(i, j) for i in range(len(ts))], marker=".", label=name)
        ax2.set_xscale("log", base=2)
        ax2.set_yscale("log")
        for ax in (ax1, ax2):  # the grid's T values as plain numbers
            ax.set_xticks(ts)
            ax.set_xticklabels([str(int(t)) for t in ts])
            ax.minorticks_off()
        ax2.set_xlabel("timesteps T")
        ax2.set_ylabel("mean |a - rate x lambda| / mean a")
        ax2.set_title("Per-layer error of the SNN's rates (ANN units)", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        from ..io import atomic_write_bytes

        return atomic_write_bytes(path, buf.getvalue())


@torch.no_grad()
def measure_conversion(ann: SpikingClassifier, snn: SpikingClassifier, stages: list[Stage], thresholds: list[float],
                       x: torch.Tensor, y: torch.Tensor, timesteps: list[int], method: str, batch_size: int = 100,
                       chunk: int = 16, seed: int = 0,
                       progress: Optional[Callable[[str], None]] = None) -> ConversionReport:
    """Compare ``snn`` with its (BatchNorm-folded) ``ann`` on images ``x`` [N, C, H, W] with
    labels ``y`` [N] at every T in ``timesteps`` (module docstring)."""
    ts = sorted(set(int(t) for t in timesteps))
    hidden = [st for st in stages if st.act is not None]
    lams = list(np.cumprod(thresholds)) if thresholds else []
    n_layers = len(hidden)
    abs_err = np.zeros((len(ts), n_layers))
    act_sum = np.zeros(n_layers)
    counts_per_layer = np.zeros(n_layers)
    ann_correct, snn_correct = 0, np.zeros(len(ts), dtype=int)
    snn.eval()
    for lo in range(0, x.shape[0], batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        acts, logits = ann_activations(ann, stages, xb, batch_size)
        ann_correct += int((logits.argmax(1) == yb).sum())
        for j, a in enumerate(acts):
            act_sum[j] += float(a.sum())
            counts_per_layer[j] += a.numel()
        spikes = [torch.zeros_like(a) for a in acts]

        hooks = []
        for j, st in enumerate(hidden):
            def count(_m, _i, out, j=j):
                spikes[j] += out.sum(0)
            hooks.append(snn.backbone.get_submodule(st.act).register_forward_hook(count))
        out_sum = None
        try:
            for end, out in run_steps(snn, xb, ts[-1], chunk, marks=tuple(ts), seed=seed + lo):
                s = out.sum(0)
                out_sum = s if out_sum is None else out_sum + s
                if end in ts:
                    i = ts.index(end)
                    snn_correct[i] += int(((out_sum / end).argmax(1) == yb).sum())
                    for j, a in enumerate(acts):
                        abs_err[i, j] += float((a - spikes[j] / end * lams[j]).abs().sum())
        finally:
            for h in hooks:
                h.remove()
        if progress is not None:
            progress(f"report: {min(lo + batch_size, x.shape[0])}/{x.shape[0]} images")
    n = int(x.shape[0])
    return ConversionReport(
        method=method, encoder=snn.config.encoder, n_images=n, timesteps=ts, ann_correct=ann_correct,
        snn_correct=[int(c) for c in snn_correct], layers=[st.act for st in hidden],
        thresholds=[float(t) for t in thresholds], layer_scale=[float(v) for v in lams],
        ann_mean=[float(s / c) for s, c in zip(act_sum, counts_per_layer)],
        mae=[[float(abs_err[i, j] / counts_per_layer[j]) for j in range(n_layers)] for i in range(len(ts))])
