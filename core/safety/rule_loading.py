"""Reading rules files: YAML parsed with line numbers so every error names its file and line; per-rule checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.safety.rule_schema import Group, Rule, RuleError, RulesConfig
from core.settings import REPO_ROOT

# libyaml parses the rule files ~10x faster; the pure-Python loader gives the same nodes and lines.
_YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)




def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node that `loc` (a pydantic error location) reaches."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _rule_id(node: yaml.Node | None, loc: tuple[int | str, ...]) -> str | None:
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(node, yaml.MappingNode):
        return None
    rules = next((v for k, v in node.value if k.value == "rules"), None)
    if not isinstance(rules, yaml.SequenceNode) or not isinstance(loc[1], int) or loc[1] >= len(rules.value):
        return None
    rule = rules.value[loc[1]]
    if isinstance(rule, yaml.MappingNode):
        return next((str(v.value) for k, v in rule.value if k.value == "id" and isinstance(v, yaml.ScalarNode)), None)
    return None


def _describe(err: Any) -> str:
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return "must be " + "|".join(re.findall(r"'([^']*)'", expected))
    return str(err["msg"]).removeprefix("Value error, ")


def _parse(name: str, text: str, model: type[BaseModel]) -> tuple[BaseModel | None, yaml.Node | None, list[str]]:
    try:
        node = yaml.compose(text, Loader=_YAML_LOADER)
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader, C-accelerated when available
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, None, [f"{name} line {line}: not valid YAML: {getattr(exc, 'problem', exc)}"]
    try:
        return model.model_validate(data or {}), node, []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("str", "list[str]")))
            rule = _rule_id(node, loc)
            field_name = ".".join(str(p) for p in loc[2:] if isinstance(p, str)) if rule is not None else ".".join(map(str, loc))
            where = f"rule {rule!r}: " if rule is not None else ""
            problems.append(f"{name} line {_line_of(node, loc)}: {where}{field_name + ' ' if field_name else ''}{_describe(err)}")
        return None, node, problems


def read_sources(folder: Path) -> dict[str, str]:
    """{file as shown in errors: YAML text} for every rule file in `folder`."""
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RuleError([f"{folder}: no rule files (*.yaml) found"])
    return {_display(p): p.read_text(encoding="utf-8") for p in files}


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _check_rule(name: str, node: yaml.Node | None, i: int, rule: Rule, synonyms: dict[str, list[str]],
                config: RulesConfig) -> list[str]:
    problems = []
    groups: list[tuple[tuple[int | str, ...], Group]] = [
        (("rules", i, "match", c, g), grp) for c, clause in enumerate(rule.match) for g, grp in enumerate(clause)
    ]
    groups += [(("rules", i, "unless", u), p) for u, p in enumerate(rule.unless)]
    for loc, group in groups:
        for p in group if isinstance(group, list) else [group]:
            where = f"{name} line {_line_of(node, loc)}: rule {rule.id!r}:"
            if p.startswith("@") and p[1:] not in synonyms:
                problems.append(f"{where} unknown synonym set {p!r}")
            elif p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as exc:
                    problems.append(f"{where} bad regex {p[3:]!r}: {exc}")
    return problems
