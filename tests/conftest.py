"""Shared toy models for the tests.

- :func:`make_tiny_sew` / fixture ``tiny_sew``: the smallest SEW-ResNet (two stages of one block,
  width 4, T = 2, phase coding, stem pool) on 1-channel 12x12 images, 10 classes; images
  [B, 1, 12, 12] in [0, 1] -> logits [B, 10]. Built under ``torch.manual_seed(seed)`` so
  every test gets the same weights whatever ran before it. Any model option can be
  overridden (``tiny_sew(encoder="poisson")``, ``tiny_sew(pool="avg", spiking=False)``).
- :func:`save_tiny_checkpoint` / fixture ``tiny_checkpoint``: that model for 28x28 mnist5k
  images, saved (untrained) as an snnrobust checkpoint for CLI tests.
- fixture ``one_thread``: torch on one thread for a module of tiny-tensor tests, where thread
  start-up costs more than it saves on the shared 2-core machine; use it with
  ``pytestmark = pytest.mark.usefixtures("one_thread")``.

The linear toy models built to show one masking symptom each live in ``tests/toy_models.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_SEW = dict(layers=[1, 1], width=4, in_channels=1, image_size=12, T=2, encoder="phase", stem_pool=True,
                num_classes=10)


def make_tiny_sew(seed: int = 0, **overrides):
    """The tiny SEW-ResNet described in the module docstring, with ``overrides`` applied."""
    from snnrobust.models import create_model

    torch.manual_seed(seed)
    return create_model("sew_resnet", **{**TINY_SEW, **overrides})


def save_tiny_checkpoint(path: Path, seed: int = 0, **overrides) -> Path:
    """Save an untrained tiny SEW-ResNet for mnist5k (28x28) at ``path``; returns ``path``."""
    from snnrobust.training import save_checkpoint

    model = make_tiny_sew(seed, **{"image_size": 28, **overrides})
    save_checkpoint(path, {"model_config": model.config.to_dict(), "model_state": model.state_dict(),
                           "data": {"dataset": "mnist5k", "split_seed": 0}})
    return path


@pytest.fixture
def tiny_sew():
    """The builder :func:`make_tiny_sew` (call it with option overrides)."""
    return make_tiny_sew


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """``tmp_path/tiny.pt``: an untrained tiny SEW-ResNet checkpoint for mnist5k."""
    return save_tiny_checkpoint(tmp_path / "tiny.pt")


@pytest.fixture(scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
