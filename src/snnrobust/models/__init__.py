"""Spiking models (and their ANN twins) from one registry."""

from .classifier import SpikingClassifier
from .config import ModelConfig, ann_twin
from .registry import (MODELS, build_from_config, create_model, list_models, model_from_dict, model_from_state,
                       register_model)

__all__ = ["SpikingClassifier", "ModelConfig", "ann_twin", "MODELS", "build_from_config", "create_model",
           "list_models", "model_from_dict", "model_from_state", "register_model"]
