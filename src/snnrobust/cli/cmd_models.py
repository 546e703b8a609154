"""`snnrobust models`: list architectures and their options."""

from __future__ import annotations

from ..models import ModelConfig, list_models


def register(sub) -> None:
    p = sub.add_parser("models", help="list model architectures and their options")
    p.set_defaults(func=run)


def run(args) -> int:
    entries = list_models()
    w = max(len(e.name) for e in entries)
    print("models (create_model(name, **options); every one also builds as its ANN twin with spiking=false):")
    for e in entries:
        print(f"  {e.name:<{w}}  {e.description}")
        opts = ", ".join(f"{k}={v!r}" for k, v in e.arch_options().items() if k not in e.fixed)
        print(f"  {'':<{w}}  own options: {opts or '-'}; default width {e.default_width}")
    common = sorted(ModelConfig.common_keys())
    print("common options: " + ", ".join(common))
    return 0
