"""YAML loading that remembers the line of every key, so errors can name file, line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Location = tuple[str | int, ...]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of each mapping key and sequence item."""


def _load_with_lines(text: str) -> tuple[Any, dict[Location, int]]:
    lines: dict[Location, int] = {}
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is None:
        return None, lines

    def walk(n: yaml.Node, path: Location) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = key_node.value
                lines[path + (key,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, path + (i,))

    walk(node, ())
    data = yaml.safe_load(text)
    return data, lines


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse ``path``; raise ``yaml.YAMLError`` or ``OSError`` as the parser does."""
    return _load_with_lines(Path(path).read_text("utf-8"))


def line_of(lines: dict[Location, int], loc: Location) -> int | None:
    """The line of ``loc`` or of its nearest ancestor that has one."""
    for cut in range(len(loc), -1, -1):
        key = tuple(loc[:cut])
        if key in lines:
            return lines[key]
    return None
