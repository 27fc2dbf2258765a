"""YAML loading that remembers the line of every key, so errors can name file, line and key.

The file is parsed once: the composed node tree gives the line numbers and is then constructed
into Python data. A scenario is a hand-written file of a few kilobytes, so the loader refuses
anything a person would not write before it can cost memory or time: an oversize or non-regular
file (a FIFO, ``/dev/zero``), deep nesting, alias expansion beyond a node budget (the "billion
laughs" bomb), recursive aliases and keys that are lists or mappings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from openbms.inputs import InputLimitError, read_text_limited

Location = tuple[str | int, ...]

# Limits of the input validator, not of the BMS: the longest library scenario is 3 kB with a
# nesting depth of 5, so these leave two orders of magnitude of room and still bound the work.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 40
MAX_NODES = 200_000  # nodes after alias expansion


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that counts nesting while it composes, so deep documents never reach the
    recursion limit."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise InputLimitError(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> None:
    """Refuse recursive aliases and documents that expand beyond MAX_NODES or MAX_DEPTH.

    Aliases make the node tree a graph; sizes are memoised per node, so the check costs one
    visit per distinct node however large the expansion would be.
    """
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def visit(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise InputLimitError("an alias refers to itself", node.start_mark.line + 1)
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                children += [key_node, value_node]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        size, depth = 1, 1
        for child in children:
            child_size, child_depth = visit(child)
            size, depth = size + child_size, max(depth, child_depth + 1)
            if size > MAX_NODES:
                raise InputLimitError(f"expands to more than {MAX_NODES} values", node.start_mark.line + 1)
            if depth > MAX_DEPTH:
                raise InputLimitError(f"nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1)
        active.discard(key)
        sizes[key] = (size, depth)
        return size, depth

    visit(root)


def _lines_of(root: yaml.Node) -> dict[Location, int]:
    """The line of every key and sequence item; an aliased subtree is walked once."""
    lines: dict[Location, int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Location]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise InputLimitError("a key must be a name, not a list or a mapping", key_node.start_mark.line + 1)
                lines[path + (key_node.value,)] = key_node.start_mark.line + 1
                stack.append((value_node, path + (key_node.value,)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, path + (i,)) for i, item in enumerate(node.value))
    return lines


def _load_with_lines(text: str) -> tuple[Any, dict[Location, int]]:
    if "\x00" in text:
        raise InputLimitError("holds a NUL byte, so it is not a text file")
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _expanded_size(node)
        lines = _lines_of(node)
        try:
            data = loader.construct_document(node)
        except (ValueError, TypeError, OverflowError) as err:
            # e.g. an integer of 5,000 digits or an impossible timestamp
            raise InputLimitError(f"a value cannot be read ({err})") from None
    finally:
        loader.dispose()
    return data, lines


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse ``path``; raise ``yaml.YAMLError``, ``OSError``, ``UnicodeDecodeError`` or
    ``InputLimitError`` (whose message starts with the line when it has one)."""
    return _load_with_lines(read_text_limited(Path(path), MAX_FILE_BYTES))


def line_of(lines: dict[Location, int], loc: Location) -> int | None:
    """The line of ``loc`` or of its nearest ancestor that has one."""
    for cut in range(len(loc), -1, -1):
        key = tuple(loc[:cut])
        if key in lines:
            return lines[key]
    return None
