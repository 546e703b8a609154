"""Study recipes: named YAML files in ``studies/recipes/``, validated when loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError

RECIPE_DIR = Path(__file__).parent / "recipes"
SIZE_KEYS = {"note", "dataset", "train", "model", "variants", "eval", "protocols", "sparsity", "vulnerability",
             "black_box_sources", "replicates"}
REQUIRED = {"dataset", "train", "model", "variants", "eval", "protocols"}
#: how a protocol picks the models it transfers from (see :func:`snnrobust.studies.runner.transfer_sources`)
TRANSFER_MODES = ("other-variants", "same-type-source")
#: independently seeded training runs per variant when a size does not say (``replicates:``):
#: three at quick size (a CPU can afford them and one run cannot separate an effect from seed
#: noise), one elsewhere (a full size costs GPU hours per run; say how many you can afford)
DEFAULT_REPLICATES = {"quick": 3}
MAX_REPLICATES = 100


def default_replicates(size: str) -> int:
    return DEFAULT_REPLICATES.get(size, 1)


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
    _check_claims(f"study recipe {p}", d.get("claims", []))
    for size, spec in d["sizes"].items():
        missing = REQUIRED - set(spec)
        unknown = set(spec) - SIZE_KEYS
        if missing or unknown:
            raise ConfigError(f"study recipe {p} size {size}: missing {sorted(missing)}, unknown {sorted(unknown)}")
        _check_size(f"study recipe {p} size {size}", spec)
        spec.setdefault("replicates", default_replicates(size))
    return Recipe(d.get("name", p.stem), str(d.get("seed", "")), d.get("title", p.stem), d.get("description", ""),
                  d.get("claims", []), d["sizes"])


def _check_size(where: str, spec: dict) -> None:
    """One-line errors for what would otherwise fail deep inside a study run."""
    from ..attacks.registry import attack_options
    from ..evaluation.suites import get_budget, get_suite
    from ..evaluation.threat import ThreatModel

    labels = _unique_keys(where, spec, "variants", "label")
    reps = spec.get("replicates")
    if reps is not None and not (isinstance(reps, int) and not isinstance(reps, bool)
                                 and 1 <= reps <= MAX_REPLICATES):
        raise ConfigError(f"{where}: 'replicates' must be an integer from 1 to {MAX_REPLICATES} (independently "
                          f"seeded training runs per variant), got {reps!r}")
    ev = spec["eval"]
    if not isinstance(ev, dict) or "eps" not in ev or "samples" not in ev:
        raise ConfigError(f"{where}: 'eval' needs 'eps' and 'samples'")
    _unique_keys(where, spec, "protocols", "name")
    for q in spec["protocols"]:
        if ("suite" in q) == ("attack" in q):
            raise ConfigError(f"{where}: protocol {q['name']} needs exactly one of 'suite' or 'attack'")
        if "suite" in q:
            get_suite(q["suite"])
            over = q.get("overrides") or {}
            if not isinstance(over, dict):
                raise ConfigError(f"{where}: protocol {q['name']} 'overrides' must map budget settings to integers")
            get_budget(q.get("budget", "quick")).override(**over)
        else:
            attack_options(q["attack"])  # unknown attack -> one-line error listing the attacks
        sweep = q.get("eps_sweep")
        if sweep is not None and not isinstance(sweep, list):
            raise ConfigError(f"{where}: protocol {q['name']} 'eps_sweep' must be a list of eps values ([] for none)")
        vote = q.get("vote")
        if vote is not None and not (isinstance(vote, int) and not isinstance(vote, bool) and vote >= 1):
            raise ConfigError(f"{where}: protocol {q['name']} 'vote' must be a positive integer, got {vote!r}")
        if "norm" in q or "eps" in q:  # a protocol's own threat model (one-line error when invalid)
            ThreatModel(norm=q.get("norm", ev.get("norm", "linf")), eps=q.get("eps", ev["eps"]))
        n = q.get("samples")
        if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= int(ev["samples"])):
            raise ConfigError(f"{where}: protocol {q['name']} 'samples' must be an integer from 1 to the eval "
                              f"samples ({ev['samples']}), got {n!r}")
        only = q.get("models")
        if only is not None and (not isinstance(only, list) or not only or not set(only) <= set(labels)):
            raise ConfigError(f"{where}: protocol {q['name']} 'models' must list variant labels "
                              f"(variants: {', '.join(map(str, labels))})")
        if q.get("transfer") is not None and q["transfer"] not in TRANSFER_MODES:
            raise ConfigError(f"{where}: protocol {q['name']} has transfer {q['transfer']!r}; choose one of: "
                              f"{', '.join(TRANSFER_MODES)}")
    _check_derived_variants(where, spec)
    sources = spec.get("black_box_sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError(f"{where}: 'black_box_sources' must map a variant label to its source's label")
    for target, src in sources.items():
        if target not in labels or src not in labels or target == src:
            raise ConfigError(f"{where}: black_box_sources {target}: {src} must name two different variants "
                              f"(variants: {', '.join(map(str, labels))})")


def _check_claims(where: str, claims) -> None:
    """Each claim's checks name a known expectation, and a ``not-less`` margin is a fraction."""
    from ..report.verdicts import EXPECT_WORDS, EXPECTATIONS

    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise ConfigError(f"{where}: 'claims' must be a list of mappings")
    for c in claims:
        for check in c.get("checks") or []:
            expect = str(check.get("expect", "")).lower() if isinstance(check, dict) else ""
            if expect not in EXPECT_WORDS:
                raise ConfigError(f"{where}: claim {c.get('id')}: check expect {expect or None!r} is not one of "
                                  f"{', '.join(EXPECTATIONS)}")
            m = check.get("margin")
            if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < 1):
                raise ConfigError(f"{where}: claim {c.get('id')}: margin must be a fraction in [0, 1) "
                                  f"(0.05 = 5 points), got {m!r}")


def _check_derived_variants(where: str, spec: dict) -> None:
    """Variants made from others (Sharmin et al. 2020's SNN-conv and SNN-BP): ``convert: {from:
    LABEL, ...ConversionConfig options}`` converts an ANN variant listed before it, and
    ``init_from: LABEL`` fine-tunes a converted variant listed before it."""
    from ..conversion import ConversionConfig

    made: dict[str, str] = {}  # label -> "ann" | "converted" | "trained"
    for v in spec["variants"]:
        label = v["label"]
        if v.get("convert") is not None and v.get("init_from") is not None:
            raise ConfigError(f"{where}: variant {label} has both 'convert' and 'init_from'; give one")
        if v.get("convert") is not None:
            conv = v["convert"]
            if not isinstance(conv, dict) or made.get(conv.get("from")) != "ann":
                raise ConfigError(f"{where}: variant {label}: 'convert' needs 'from' naming an ANN variant "
                                  "(train: {method: ann}) listed before it")
            try:
                ConversionConfig(**{k: val for k, val in conv.items() if k != "from"})
            except TypeError as e:
                raise ConfigError(f"{where}: variant {label}: unknown conversion option ({e})") from None
            made[label] = "converted"
        elif v.get("init_from") is not None:
            if made.get(v["init_from"]) != "converted":
                raise ConfigError(f"{where}: variant {label}: 'init_from' must name a converted variant "
                                  "(one with 'convert') listed before it")
            made[label] = "fine-tuned"
        else:
            method = {**(spec.get("train") or {}), **(v.get("train") or {})}.get("method", "bptt")
            made[label] = "ann" if method == "ann" else "trained"


def _unique_keys(where: str, spec: dict, section: str, key: str) -> list:
    """The ``key`` of every entry of list ``spec[section]``; each entry must be a mapping with
    its own unique ``key``."""
    items = spec[section]
    if not isinstance(items, list) or not all(isinstance(v, dict) for v in items):
        raise ConfigError(f"{where}: '{section}' must be a list of mappings")
    values = [v.get(key) for v in items]
    if len(set(map(str, values))) != len(values) or None in values:
        raise ConfigError(f"{where}: every entry of '{section}' needs a unique {key}")
    return values
