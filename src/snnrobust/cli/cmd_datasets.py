"""`snnrobust datasets`: list datasets, their shapes and where they are looked for."""

from __future__ import annotations

from ..data import list_datasets


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list datasets and where their files are found")
    p.set_defaults(func=run)


def run(args) -> int:
    for e in list_datasets():
        fields = {k: getattr(e, k) for k in ("name", "description", "shape", "num_classes", "where") if hasattr(e, k)}
        head = fields.pop("name", str(e))
        desc = fields.pop("description", "")
        print(f"  {head:<14} {desc}")
        for k, v in fields.items():
            print(f"  {'':<14}   {k}: {v}")
    return 0
