"""BPTT training, atomic checkpoints with exact resume, clean evaluation."""

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import DEMO_MODEL, TrainConfig
from .evaluation import CleanResult, evaluate_clean
from .trainer import CHECKPOINT_NAME, TrainResult, build_model_for, resolve_device, train

__all__ = ["load_checkpoint", "read_checkpoint", "save_checkpoint", "DEMO_MODEL", "TrainConfig", "CleanResult",
           "evaluate_clean", "CHECKPOINT_NAME", "TrainResult", "build_model_for", "resolve_device", "train"]
