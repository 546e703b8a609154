"""`--model-file FILE.py:FUNCTION --weights W.pt --dataset NAME`: a user's own SNN on the command line.

The model file is the user's own Python code and is executed as such (like ``python FILE.py``);
the weights file is read with ``torch.load(weights_only=True)``, which never executes code.
``FUNCTION()`` returns an ``nn.Module`` (wrapped here with ``--framework``, ``--time-steps`` and
``--input-format``) or a model already wrapped with :func:`snnrobust.wrap`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own model (SpikingJelly, snnTorch or plain PyTorch; see docs/byo-model.md)")
    g.add_argument("--model-file", metavar="FILE.py:FUNCTION",
                   help="your Python file and the function in it that builds the model (your code runs)")
    g.add_argument("--weights", metavar="W.pt", help="a state_dict saved with torch.save (read with weights_only=True)")
    g.add_argument("--dataset", help="dataset to evaluate on, e.g. mnist5k (its fixed test split)")
    g.add_argument("--framework", default="auto", help="auto (default), spikingjelly, snntorch or torch")
    g.add_argument("--time-steps", type=int, help="T, for models that take [T, B, ...] or one step per call")
    g.add_argument("--input-format", default="auto", help="auto, image, multi-step or single-step")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load(args: argparse.Namespace, device: Any):
    """(wrapped model on ``device``, model_info) from ``--model-file`` and ``--weights``."""
    import torch

    from ..foreign import ForeignModel, wrap

    spec = str(args.model_file)
    path_text, sep, func = spec.rpartition(":")
    if not sep or not func or not path_text:
        raise ConfigError(f"--model-file {spec!r}: write FILE.py:FUNCTION, e.g. my_model.py:build")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"--model-file: no such file {path}")
    mod_spec = importlib.util.spec_from_file_location(f"snnrobust_user_model_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ConfigError(f"--model-file: {path} is not a Python file")
    module = importlib.util.module_from_spec(mod_spec)
    sys.path.insert(0, str(path.parent.resolve()))  # the user's file may import its neighbours
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's code; report it in one line
        raise ConfigError(f"--model-file: running {path} failed: {_one_line(e)}") from None
    finally:
        sys.path.pop(0)
    build = getattr(module, func, None)
    if not callable(build):
        raise ConfigError(f"--model-file: {path} has no function {func!r}")
    try:
        model = build()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--model-file: {func}() failed: {_one_line(e)}") from None
    inner = model.model if isinstance(model, ForeignModel) else model
    if not isinstance(inner, torch.nn.Module):
        raise ConfigError(f"--model-file: {func}() returned a {type(model).__name__}, not a torch nn.Module")
    if args.weights:
        wpath = Path(args.weights)
        if not wpath.is_file():
            raise ConfigError(f"--weights: no such file {wpath}")
        try:
            state = torch.load(wpath, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickles with code, corrupt files
            raise ConfigError(f"--weights: {wpath} is not a weights-only state_dict ({_one_line(e)})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigError(f"--weights: {wpath} holds a {type(state).__name__}, not a state_dict")
        try:
            inner.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError(f"--weights: {wpath} does not match the model from {func}(): "
                              f"{' '.join(str(e).split())[:300]}") from None
    if not isinstance(model, ForeignModel):
        model = wrap(model, framework=args.framework, time_steps=args.time_steps, input_format=args.input_format)
    model.to(device).eval()
    info = {"class": "ForeignModel", "config": model.config.to_dict(), "model_file": spec,
            "weights": str(args.weights) if args.weights else None}
    if args.weights:
        from ..io import file_sha256

        info["sha256"] = file_sha256(Path(args.weights))
    return model, info


def run_eval(args: argparse.Namespace) -> int:
    """``snnrobust eval --model-file ...``: clean accuracy (95 % Wilson interval) of the user's model
    on the test split of ``--dataset``. Per-layer spike rates are not measured (they count
    snnrobust's own neurons)."""
    import json

    from ..data import get_dataset
    from ..training import evaluate_clean, resolve_device

    if args.checkpoint and args.model_file:
        raise ConfigError("give either a CHECKPOINT or --model-file, not both")
    if not args.model_file:
        raise ConfigError("give the CHECKPOINT to evaluate, or your own model with --model-file FILE.py:FUNCTION "
                          "--weights W.pt --dataset NAME")
    if not args.dataset:
        raise ConfigError("--model-file needs --dataset NAME (e.g. mnist5k)")
    device = resolve_device(args.device)
    model, info = load(args, device)
    splits = get_dataset(args.dataset, root=args.data_root, split_seed=0)
    res = evaluate_clean(model, splits.test, args.batch_size, device, spike_rates=False, progress=not args.json)
    if args.json:
        print(json.dumps({"model_file": args.model_file, "weights": args.weights, "dataset": splits.info.name,
                          "model": info["config"], **res.to_dict()}, indent=2))
        return 0
    d = res.to_dict()
    cfg = info["config"]
    print(f"{args.model_file}: {cfg['framework']} {cfg['model_class']}, input {cfg['input_format']}"
          f"{'' if cfg['time_steps'] is None else ', T=' + str(cfg['time_steps'])}, on {splits.info.name} test split "
          f"({res.n} images)")
    print(f"clean accuracy {d['accuracy']:.4f}  (95% CI {d['ci95'][0]:.4f}-{d['ci95'][1]:.4f}, "
          f"{res.correct}/{res.n})   loss {res.loss:.4f}")
    return 0
