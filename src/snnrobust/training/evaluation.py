"""Clean evaluation: accuracy (with a 95 % Wilson interval), loss, spike rate per layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation.metrics import wilson_interval as wilson
from ..spiking.neurons import SpikingNeuron


@dataclass
class CleanResult:
    correct: int
    n: int
    loss: float
    spike_rates: dict[str, float] = field(default_factory=dict)  # layer name -> mean spikes per neuron per step

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.n, 1)

    def to_dict(self) -> dict:
        lo, hi = wilson(self.correct, self.n)
        return {"accuracy": self.accuracy, "ci95": [lo, hi], "correct": self.correct, "n": self.n,
                "loss": self.loss, "spike_rates": self.spike_rates}


@torch.no_grad()
def evaluate_clean(model: nn.Module, dataset, batch_size: int = 256, device: "str | torch.device" = "cpu",
                   spike_rates: bool = False, progress: bool = False) -> CleanResult:
    """Accuracy and mean CE loss of ``model`` (eval mode) on an ImageDataset.

    With ``spike_rates`` the mean firing rate of every spiking layer (spikes per neuron
    per timestep, in [0, 1]) is recorded with forward hooks."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    hooks = []
    if spike_rates:
        for name, m in model.named_modules():
            if isinstance(m, SpikingNeuron):
                def hook(mod, inp, out, name=name):
                    sums[name] = sums.get(name, 0.0) + float(out.float().sum())
                    counts[name] = counts.get(name, 0) + out.numel()
                hooks.append(m.register_forward_hook(hook))
    correct, loss_sum, n = 0, 0.0, len(dataset)
    try:
        idx = torch.arange(n)
        it = range(0, n, batch_size)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="eval", unit="batch", leave=False)
        for s in it:
            x, y = dataset.batch(idx[s:s + batch_size])
            x, y = x.to(device), y.to(device)
            logits = model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rates = {k: sums[k] / counts[k] for k in sums}
    return CleanResult(correct, n, loss_sum / max(n, 1), rates)
