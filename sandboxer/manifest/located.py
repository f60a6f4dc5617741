"""Stage ①: YAML text → a tree whose every node keeps its file:line:col."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import yaml

from ..errors import Diagnostic, Span

try:  # libyaml is ~10x faster; the pure loader gives the same marks
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class Node:
    """A YAML value with where it came from. Mappings hold (key Node, value Node) pairs."""

    value: Union[dict, list, str, int, float, bool, None]
    span: Span
    key_span: Span | None = None  # for mapping values: where their key was written

    @property
    def kind(self) -> str:
        v = self.value
        if isinstance(v, dict):
            return "mapping"
        if isinstance(v, list):
            return "list"
        if v is None:
            return "null"
        return type(v).__name__

    def plain(self) -> Any:
        """The value with spans stripped (for hashing and error-free consumers)."""
        if isinstance(self.value, dict):
            return {k: n.plain() for k, n in self.value.items()}
        if isinstance(self.value, list):
            return [n.plain() for n in self.value]
        return self.value


def _span(file: str, mark: Any) -> Span:
    return Span(file, mark.line + 1, mark.column + 1)


def parse_yaml(text: str, file: str) -> tuple[Node | None, list[Diagnostic]]:
    """Parse one YAML document into Nodes; duplicate keys and syntax errors become diagnostics."""
    diags: list[Diagnostic] = []
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [Diagnostic(Span(file, 1, 1), "the manifest is empty",
                                     "start with `sandboxer: 1` and an `imports:` mapping")]
        return _convert(root, file, diags, loader), diags
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = _span(file, mark) if mark else None
        return None, [Diagnostic(span, f"invalid YAML: {e.problem or e.context}",
                                 "check indentation and quoting around this point")]
    finally:
        loader.dispose()


def _convert(node: yaml.Node, file: str, diags: list[Diagnostic], loader: Any,
             key_span: Span | None = None) -> Node:
    span = _span(file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Node] = {}
        for k, v in node.value:
            kspan = _span(file, k.start_mark)
            if not isinstance(k, yaml.ScalarNode):
                diags.append(Diagnostic(kspan, "mapping keys must be plain strings"))
                continue
            key = k.value
            if key == "<<":
                diags.append(Diagnostic(kspan, "YAML merge keys (<<) are not supported",
                                        "use `extends:` to compose manifests"))
                continue
            if key in out:
                first = out[key].key_span
                diags.append(Diagnostic(kspan, f"duplicate key '{key}' (first defined on line {first.line})",
                                        "merge the two entries into one"))
                continue
            out[key] = _convert(v, file, diags, loader, kspan)
        return Node(out, span, key_span)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(v, file, diags, loader) for v in node.value], span, key_span)
    try:
        value = loader.construct_object(node, deep=True) if node.tag != "tag:yaml.org,2002:str" else node.value
    except yaml.YAMLError as e:
        diags.append(Diagnostic(span, f"cannot read this value: {e}"))
        value = node.value
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = node.value  # timestamps, binary: keep the text, the validator will complain
    return Node(value, span, key_span)
