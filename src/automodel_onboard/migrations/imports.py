"""Move ``from old import Name`` to ``from new import Name`` in Python sources, with libcst.

Only the import statements that name a moved symbol are edited: the moved names leave the old statement (which
disappears when nothing is left), join an existing ``from new import ...`` of the same block, or form a new statement
placed where isort would put it among the block's ``from`` imports of the same package. Aliases (``as``) survive, and
uses of the names need no change. Running the same moves again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from automodel_onboard.files import atomic_write

LINE_LENGTH = 120  # NeMo AutoModel formats with ruff at this line length
INDENT = "    "


@dataclass(frozen=True)
class Move:
    """``name`` is now imported from ``new_module`` instead of ``old_module``."""

    name: str
    old_module: str
    new_module: str


@dataclass(frozen=True)
class FileResult:
    path: Path
    changed: bool
    skipped: str | None = None  # why the file was left alone (it does not parse, say)


# --------------------------------------------------------------------------------------------------------------------
# Source level


def rewrite_source(source: str, moves: Sequence[Move]) -> str:
    """``source`` with ``moves`` applied; raises ``libcst.ParserSyntaxError`` when it does not parse."""
    module = cst.parse_module(source)
    return module.visit(_Mover(tuple(moves))).code


class _Mover(cst.CSTTransformer):
    """Applies the moves to every statement block: the module body and each indented block (imports in functions)."""

    def __init__(self, moves: tuple[Move, ...]) -> None:
        super().__init__()
        self.moves = moves

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        return updated.with_changes(body=_rewrite_block(list(updated.body), self.moves))

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        return updated.with_changes(body=_rewrite_block(list(updated.body), self.moves))


def _rewrite_block(body: list[cst.BaseStatement], moves: tuple[Move, ...]) -> list[cst.BaseStatement]:
    by_old = {(m.old_module, m.name): m.new_module for m in moves}
    index = 0
    while index < len(body):
        found = _import_from(body[index])
        if found is None:
            index += 1
            continue
        module, names = found
        moving = [a for a in names if (module, _dotted(a.name)) in by_old]
        if not moving:
            index += 1
            continue
        body, index = _remove_aliases(body, index, moving)
        for target in dict.fromkeys(by_old[(module, _dotted(a.name))] for a in moving):
            aliases = [a for a in moving if by_old[(module, _dotted(a.name))] == target]
            body = _add_aliases(body, target, aliases)
        index = 0  # positions shifted; rescanning is cheap and terminates, as moved names never match again
    return body


def _import_from(statement: cst.BaseStatement) -> tuple[str, Sequence[cst.ImportAlias]] | None:
    """``(module, aliases)`` of a line holding exactly one absolute ``from module import names`` (not ``*``)."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1):
        return None
    node = statement.body[0]
    if not isinstance(node, cst.ImportFrom) or node.relative or node.module is None:
        return None
    if isinstance(node.names, cst.ImportStar):
        return None
    return _dotted(node.module), node.names


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _key(alias: cst.ImportAlias) -> tuple[str, str | None]:
    asname = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else None
    return _dotted(alias.name), asname


# --------------------------------------------------------------------------------------------------------------------
# Editing one block


def _remove_aliases(
    body: list[cst.BaseStatement], index: int, moving: Sequence[cst.ImportAlias]
) -> tuple[list[cst.BaseStatement], int]:
    statement = body[index]
    node = statement.body[0]
    gone = {_key(a) for a in moving}
    kept = [a for a in node.names if _key(a) not in gone]
    if kept:
        body[index] = statement.with_changes(body=[_with_names(node, kept)])
        return body, index + 1
    # The statement goes; its leading comments and blank lines stay with what follows.
    if index + 1 < len(body) and hasattr(body[index + 1], "leading_lines"):
        following = body[index + 1]
        body[index + 1] = following.with_changes(leading_lines=[*statement.leading_lines, *following.leading_lines])
    return body[:index] + body[index + 1 :], index


def _add_aliases(
    body: list[cst.BaseStatement], target: str, aliases: Sequence[cst.ImportAlias]
) -> list[cst.BaseStatement]:
    clean = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in aliases]
    for position, statement in enumerate(body):
        found = _import_from(statement)
        if found is not None and found[0] == target:
            present = {_key(a) for a in found[1]}
            new = [a for a in clean if _key(a) not in present]
            if new:
                node = statement.body[0]
                body[position] = statement.with_changes(body=[_with_names(node, _merged(list(node.names), new))])
            return body
    statement = cst.SimpleStatementLine(body=[_with_names(cst.ImportFrom(module=_module(target), names=clean), clean)])
    position = _sorted_position(body, target)
    if position < len(body) and _is_same_block(body[position], target):
        # The new line takes over the blank lines that opened the block it now starts.
        following = body[position]
        statement = statement.with_changes(leading_lines=following.leading_lines)
        body[position] = following.with_changes(leading_lines=[])
    return [*body[:position], statement, *body[position:]]


def _sorted_position(body: Sequence[cst.BaseStatement], target: str) -> int:
    """Before the first ``from`` import of the same top-level package that sorts after ``target``, else after the
    last one; with none, after the block's last import (or at the top)."""
    package = target.split(".")[0]
    same = [(i, f[0]) for i, s in enumerate(body) if (f := _import_from(s)) and f[0].split(".")[0] == package]
    for position, module in same:
        if module.lower() > target.lower():
            return position
    if same:
        return same[-1][0] + 1
    imports = [i for i, s in enumerate(body) if _import_from(s) or _is_import(s)]
    return imports[-1] + 1 if imports else 0


def _is_same_block(statement: cst.BaseStatement, target: str) -> bool:
    found = _import_from(statement)
    return bool(found) and found[0].split(".")[0] == target.split(".")[0]


def _is_import(statement: cst.BaseStatement) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and any(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in statement.body
    )


def _module(dotted: str) -> cst.Attribute | cst.Name:
    expression = cst.parse_expression(dotted)
    assert isinstance(expression, (cst.Attribute, cst.Name))
    return expression


def _order(alias: cst.ImportAlias) -> tuple[int, str]:
    # ruff's isort default (order-by-type): CONSTANTS, then Classes, then functions and the rest.
    name = _dotted(alias.name)
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name


def _merged(existing: list[cst.ImportAlias], new: Sequence[cst.ImportAlias]) -> list[cst.ImportAlias]:
    names = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in existing]
    in_order = sorted(names, key=_order) == names
    for alias in new:
        names.append(alias)
        if in_order:
            names.sort(key=_order)
    return names


def _with_names(node: cst.ImportFrom, names: Sequence[cst.ImportAlias]) -> cst.ImportFrom:
    """``node`` importing ``names``, one line when it fits, else parenthesised one per line as ruff formats it."""
    module = _dotted(node.module) if node.module is not None else ""
    listed = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in names]
    flat = f"from {module} import " + ", ".join(cst.Module(body=[]).code_for_node(a) for a in listed)
    if len(flat) <= LINE_LENGTH and not _magic_trailing_comma(node):
        commas = [cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))] * (len(listed) - 1) + [
            cst.MaybeSentinel.DEFAULT
        ]
        return node.with_changes(
            names=[a.with_changes(comma=c) for a, c in zip(listed, commas, strict=True)], lpar=None, rpar=None
        )
    exploded = "from {} import (\n{}\n)\n".format(
        module, "\n".join(INDENT + cst.Module(body=[]).code_for_node(a) + "," for a in listed)
    )
    return cst.parse_statement(exploded).body[0]


def _magic_trailing_comma(node: cst.ImportFrom) -> bool:
    """Whether ``node`` is parenthesised with a comma after its last name, which ruff keeps one name per line."""
    names = node.names
    return node.rpar is not None and bool(names) and isinstance(names[-1].comma, cst.Comma)


# --------------------------------------------------------------------------------------------------------------------
# Files


def rewrite_files(paths: Iterable[Path], moves: Sequence[Move]) -> tuple[FileResult, ...]:
    """Apply ``moves`` to each file; unchanged files are not rewritten, unparseable ones are skipped."""
    results = []
    for path in paths:
        source = path.read_text(encoding="utf-8")
        try:
            rewritten = rewrite_source(source, moves)
        except cst.ParserSyntaxError as exc:
            results.append(FileResult(path, changed=False, skipped=f"does not parse (line {exc.raw_line})"))
            continue
        if rewritten != source:
            atomic_write(path, rewritten.encode("utf-8"))
        results.append(FileResult(path, changed=rewritten != source))
    return tuple(results)
