"""The shipped BMS profiles: finding them, reading their YAML and merging ``extends:``/``set:``.

A layer just above the brain (``bms``) and below the twin: the brain holds the profile's schema
and validation (``openbms.bms.profile``) and reads no file; this module does the reading. The
YAML files stay package data of ``openbms.bms`` (``bms/profiles/*.yaml``).
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import yaml

from openbms.bms.profile import Profile, ProfileError, is_protection_key, validate_profile

_PACKAGE, _FOLDER = "openbms.bms", "profiles"


def _builtin_text(name: str) -> str:
    if name not in builtin_profiles():  # never a path: a name is looked up, not opened
        raise ProfileError(f"unknown BMS profile {name!r}; built in: {', '.join(builtin_profiles())}")
    return resources.files(_PACKAGE).joinpath(_FOLDER, f"{name}.yaml").read_text("utf-8")


def builtin_profiles() -> list[str]:
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _raw_profile(name: str) -> dict[str, Any]:
    raw = yaml.safe_load(_builtin_text(name))
    base = raw.pop("extends", None)
    overrides = raw.pop("set", {}) or {}
    if base is not None:
        merged = _raw_profile(base)
        merged["name"] = raw.get("name", name)
        apply_overrides(merged, overrides)
        return merged
    return dict(raw)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Apply dotted-key overrides in place. A protection's name may stand first (docs/behaviour.md §8)."""
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node: Any = raw
        protections = raw.get("protections")
        if isinstance(protections, dict) and parts[0] in protections:
            node = raw["protections"]
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[: depth + 1])
                raise ProfileError(f"unknown setting {dotted!r} ({where!r} does not exist)")
            node = node[part]
        leaf = parts[-1]
        if not isinstance(node, dict):
            raise ProfileError(f"unknown setting {dotted!r}")
        is_protection = node is not raw and "quantity" in node
        if leaf not in node and not (is_protection and is_protection_key(leaf)):
            raise ProfileError(f"unknown setting {dotted!r}")
        node[leaf] = value


def load_profile(name: str = "lfp", overrides: dict[str, Any] | None = None) -> Profile:
    """The built-in profile ``name`` with dotted-key ``overrides`` applied and validated."""
    raw = copy.deepcopy(_raw_profile(name))
    apply_overrides(raw, overrides or {})
    return validate_profile(raw)
