"""Parsing helpers shared by CLI commands: KEY=VALUE options with YAML-typed values."""

from __future__ import annotations

from ..errors import ConfigError


def parse_value(text: str):
    """'8' -> 8, '1e-3' -> 0.001, 'true' -> True, '[1,1]' -> [1, 1], 'max' -> 'max'."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_key_values(items: list[str] | None, what: str) -> dict:
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what} '{item}' must look like KEY=VALUE (e.g. width=16)")
        k, v = item.split("=", 1)
        if not k:
            raise ConfigError(f"{what} '{item}' has an empty key")
        out[k.strip()] = parse_value(v)
    return out
