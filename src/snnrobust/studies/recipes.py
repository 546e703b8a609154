"""Study recipes: named YAML files in ``studies/recipes/``, validated when loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError

RECIPE_DIR = Path(__file__).parent / "recipes"
SIZE_KEYS = {"note", "dataset", "train", "model", "variants", "eval", "protocols", "sparsity", "vulnerability",
             "black_box_sources"}
REQUIRED = {"dataset", "train", "model", "variants", "eval", "protocols"}


@dataclass
class Recipe:
    name: str
    seed: str
    title: str
    description: str
    claims: list
    sizes: dict

    def size(self, size: str) -> dict:
        if size not in self.sizes:
            raise ConfigError(f"study {self.name} has sizes {', '.join(self.sizes)}, not {size!r}")
        return self.sizes[size]


def list_recipes() -> list[Recipe]:
    return [load_recipe(p.stem) for p in sorted(RECIPE_DIR.glob("*.yaml"))]


def load_recipe(name_or_path: str) -> Recipe:
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") and p.is_file()):
        p = RECIPE_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        names = ", ".join(q.stem for q in sorted(RECIPE_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown study '{name_or_path}'; choose one of: {names} (or give a recipe .yaml path)")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        raise ConfigError(f"study recipe {p} is not valid YAML") from None
    if not isinstance(d, dict) or not isinstance(d.get("sizes"), dict):
        raise ConfigError(f"study recipe {p} needs a mapping with 'sizes'")
    for size, spec in d["sizes"].items():
        missing = REQUIRED - set(spec)
        unknown = set(spec) - SIZE_KEYS
        if missing or unknown:
            raise ConfigError(f"study recipe {p} size {size}: missing {sorted(missing)}, unknown {sorted(unknown)}")
        labels = [v.get("label") for v in spec["variants"]]
        if len(set(labels)) != len(labels) or None in labels:
            raise ConfigError(f"study recipe {p} size {size}: every variant needs a unique label")
    return Recipe(d.get("name", p.stem), str(d.get("seed", "")), d.get("title", p.stem), d.get("description", ""),
                  d.get("claims", []), d["sizes"])
