"""Read and edit NeMo AutoModel's ``_transformers/registry.py`` as a concrete syntax tree (libcst).

Two tables are understood: ``MODEL_ARCH_MAPPING = OrderedDict([("Arch", ("module", "Class"[, {tags}])), ...])`` and
``_CUSTOM_CONFIG_REGISTRATIONS = {"model_type": ("module", "ConfigClass"), ...}``. Edits touch only the entry concerned,
are idempotent, refuse conflicts unless asked to replace, and reach the disk atomically.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import libcst as cst

from automodel_onboard.errors import OnboardError
from automodel_onboard.files import atomic_write
from automodel_onboard.model.naming import CLASS_NAME, MODEL_TYPE, MODULE_PATH

ARCH_TABLE = "MODEL_ARCH_MAPPING"
CONFIG_TABLE = "_CUSTOM_CONFIG_REGISTRATIONS"
LINE_LENGTH = 120  # NeMo AutoModel formats with ruff at this line length
INDENT = "    "


Target = tuple[str, str]
_Container = cst.List | cst.Dict
_Entry = cst.Element | cst.DictElement


@dataclass(frozen=True)
class Registry:
    """The two tables of a registry.py: architecture -> (module, class) and model_type -> (module, config class)."""

    arch_mapping: Mapping[str, Target]
    config_registrations: Mapping[str, Target]


@dataclass(frozen=True)
class PatchResult:
    """What an edit did: whether the file changed, the new source lines, and the targets it re-pointed."""

    changed: bool
    added_lines: tuple[str, ...] = ()
    replaced: Target | None = None
    replaced_config: Target | None = None


class _Shape(Exception):
    """An entry that is not the literal shape the registry tables use."""


# --------------------------------------------------------------------------------------------------------------------
# The two tables


@dataclass(frozen=True)
class _Table:
    """Where a table lives and how its entries are laid out; subclasses know one table each."""

    variable: str
    key_label: str
    closing_indent: str  # indentation of the closing bracket, used only when the table is empty

    def container(self, value: cst.BaseExpression) -> _Container | None:
        raise NotImplementedError

    def split(self, entry: cst.BaseElement) -> tuple[cst.BaseExpression, cst.Tuple]:
        """The key node and the target tuple node of one entry."""
        raise NotImplementedError

    def with_target(self, entry: _Entry, target: cst.BaseExpression) -> _Entry:
        raise NotImplementedError

    def target_layout(self, entry: _Entry, entry_indent: str) -> tuple[str, int]:
        """The indentation of the line the target tuple starts on, and the column it starts at."""
        raise NotImplementedError

    def render_entry(self, key: str, items: Sequence[str], indent: str) -> _Entry:
        raise NotImplementedError


class _ArchTable(_Table):
    def container(self, value: cst.BaseExpression) -> _Container | None:
        if isinstance(value, cst.Call) and len(value.args) == 1 and isinstance(value.args[0].value, cst.List):
            return value.args[0].value
        return None

    def split(self, entry: cst.BaseElement) -> tuple[cst.BaseExpression, cst.Tuple]:
        pair = entry.value if isinstance(entry, cst.Element) else None
        if not (isinstance(pair, cst.Tuple) and len(pair.elements) == 2):
            raise _Shape
        target = pair.elements[1].value
        if not (isinstance(target, cst.Tuple) and len(target.elements) in (2, 3)):
            raise _Shape
        return pair.elements[0].value, target

    def with_target(self, entry: _Entry, target: cst.BaseExpression) -> _Entry:
        key, old = entry.value.elements
        return entry.with_changes(value=entry.value.with_changes(elements=[key, old.with_changes(value=target)]))

    def target_layout(self, entry: _Entry, entry_indent: str) -> tuple[str, int]:
        indent = _indent_of(entry.value.elements[0].comma.whitespace_after)
        if indent is None:
            raise _Shape
        return indent, len(indent)

    def render_entry(self, key: str, items: Sequence[str], indent: str) -> _Entry:
        inner = indent + INDENT
        target = _render_tuple(items, indent=inner, column=len(inner))
        return cst.Element(value=cst.parse_expression(f'(\n{inner}"{key}",\n{inner}{target},\n{indent})'))


class _ConfigTable(_Table):
    def container(self, value: cst.BaseExpression) -> _Container | None:
        return value if isinstance(value, cst.Dict) else None

    def split(self, entry: cst.BaseElement) -> tuple[cst.BaseExpression, cst.Tuple]:
        if not (isinstance(entry, cst.DictElement) and isinstance(entry.value, cst.Tuple)):
            raise _Shape
        if len(entry.value.elements) != 2:
            raise _Shape
        return entry.key, entry.value

    def with_target(self, entry: _Entry, target: cst.BaseExpression) -> _Entry:
        return entry.with_changes(value=target)

    def target_layout(self, entry: _Entry, entry_indent: str) -> tuple[str, int]:
        return entry_indent, len(entry_indent) + len(_code(entry.key)) + len(": ")

    def render_entry(self, key: str, items: Sequence[str], indent: str) -> _Entry:
        head = f'"{key}": '
        target = _render_tuple(items, indent=indent, column=len(indent) + len(head))
        entry = cst.parse_expression("{" + head + target + "}").elements[0]
        return entry.with_changes(comma=cst.MaybeSentinel.DEFAULT)


ARCH = _ArchTable(ARCH_TABLE, "architecture", closing_indent=INDENT)
CONFIG = _ConfigTable(CONFIG_TABLE, "model_type", closing_indent="")


# --------------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class _Found:
    """One table located in a tree: its container node and, per key, the index of its effective (last) entry."""

    container: _Container
    index: Mapping[str, int]
    targets: Mapping[str, Target]


@dataclass(frozen=True)
class _Document:
    path: Path
    data: bytes
    tree: cst.Module


def read_registry(path: Path) -> Registry:
    """Parse the registry tables of ``path`` without importing it; ``registry-unreadable`` if they are not there."""
    doc = _load(Path(path))
    arch = _find(doc.tree, ARCH, doc.path)
    if arch is None:
        raise _unreadable(doc.path, f"{ARCH_TABLE} = OrderedDict([...]) was not found at the top level")
    config = _find(doc.tree, CONFIG, doc.path)
    return Registry(
        arch_mapping=MappingProxyType(dict(arch.targets)),
        config_registrations=MappingProxyType(dict(config.targets) if config else {}),
    )


def _load(path: Path) -> _Document:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, f"cannot read it ({exc.strerror or exc})") from exc
    try:
        tree = cst.parse_module(data)
    except cst.ParserSyntaxError as exc:
        raise _unreadable(path, f"it is not valid Python (line {exc.raw_line}: {exc.message})") from exc
    return _Document(path, data, tree)


def _find(tree: cst.Module, table: _Table, path: Path) -> _Found | None:
    value = _top_level_value(tree, table.variable)
    if value is None:
        return None
    container = table.container(value)
    if container is None:
        raise _unreadable(path, f"{table.variable} is not laid out as a literal table")
    index: dict[str, int] = {}
    targets: dict[str, Target] = {}
    for position, entry in enumerate(container.elements):
        try:
            key_node, target = table.split(entry)
            key = _literal(key_node)
            targets[key] = (_literal(target.elements[0].value), _literal(target.elements[1].value))
        except _Shape:
            raise _unreadable(path, f"entry {position + 1} of {table.variable} is not a literal entry") from None
        index[key] = position  # a repeated key resolves to its last entry, as OrderedDict and dict do
    return _Found(container, MappingProxyType(index), MappingProxyType(targets))


def _top_level_value(tree: cst.Module, name: str) -> cst.BaseExpression | None:
    for statement in tree.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.AnnAssign) and _is_name(small.target, name) and small.value is not None:
                return small.value
            if isinstance(small, cst.Assign) and any(_is_name(t.target, name) for t in small.targets):
                return small.value
    return None


def _is_name(node: cst.BaseExpression, name: str) -> bool:
    return isinstance(node, cst.Name) and node.value == name


def _literal(node: cst.BaseExpression) -> str:
    value = node.evaluated_value if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)) else None
    if not isinstance(value, str):
        raise _Shape
    return value


def _unreadable(path: Path, why: str) -> OnboardError:
    return OnboardError(
        f"cannot read the NeMo AutoModel registry: {why}",
        where=str(path),
        fix="point --registry at nemo_automodel/_transformers/registry.py of a NeMo AutoModel checkout",
        code="registry-unreadable",
    )


# --------------------------------------------------------------------------------------------------------------------
# Editing


def patch_registry(
    path: Path,
    *,
    architecture: str,
    module: str,
    class_name: str,
    config_registration: tuple[str, str, str] | None = None,
    replace: bool = False,
) -> PatchResult:
    """Register ``architecture -> (module, class_name)`` and, when given, ``(model_type, module, config_class)``.

    Unchanged (and the file not rewritten) when the entries are already there; ``registry-conflict`` when a key maps
    elsewhere, unless ``replace`` re-points it in place.
    """
    _check_class(architecture, "architecture")
    _check_target(module, class_name)
    if config_registration is not None:
        model_type, config_module, config_class = config_registration
        _check_model_type(model_type)
        _check_target(config_module, config_class)
    edit = _Edit(_load(Path(path)))
    replaced = edit.upsert(ARCH, architecture, (module, class_name), replace=replace)
    replaced_config = None
    if config_registration is not None:
        replaced_config = edit.upsert(CONFIG, model_type, (config_module, config_class), replace=replace)
    return edit.commit(replaced=replaced, replaced_config=replaced_config)


def unpatch_registry(
    path: Path,
    *,
    architecture: str,
    config_model_type: str | None = None,
    restore: Target | None = None,
    restore_config: Target | None = None,
) -> PatchResult:
    """Undo :func:`patch_registry`: drop the entries it added, or re-point them to ``restore`` / ``restore_config``."""
    _check_class(architecture, "architecture")
    for target in (restore, restore_config):
        if target is not None:
            _check_target(*target)
    if config_model_type is not None:
        _check_model_type(config_model_type)
    edit = _Edit(_load(Path(path)))
    edit.rollback(ARCH, architecture, restore)
    if config_model_type is not None:
        edit.rollback(CONFIG, config_model_type, restore_config)
    return edit.commit()


class _Edit:
    """A sequence of entry edits on one document, the lines they wrote, and what the result must read back as."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.tree = doc.tree
        self.code = doc.data.decode(doc.tree.encoding)  # the tree's source, kept to avoid regenerating it
        self.added: list[str] = []
        self.expected: dict[str, dict[str, Target | None]] = {}

    def upsert(self, table: _Table, key: str, target: Target, *, replace: bool) -> Target | None:
        """Add or re-point one entry; returns the previous target when re-pointed."""
        self.expected.setdefault(table.variable, {})[key] = target
        found = self._find(table)
        current = found.targets.get(key)
        if current == target:
            return None
        if current is None:
            self._apply(found.container, _append(self.doc, found.container, table, key, target))
            return None
        if not replace:
            raise _conflict(self.doc.path, table, key, current, target)
        position = found.index[key]
        entries = list(found.container.elements)
        entries[position] = _retarget(self.doc, found.container, table, position, target)
        self._apply(found.container, found.container.with_changes(elements=entries))
        return current

    def rollback(self, table: _Table, key: str, restore: Target | None) -> None:
        if restore is not None:
            self.upsert(table, key, restore, replace=True)
            return
        self.expected.setdefault(table.variable, {})[key] = None
        found = self._find(table)
        if key in found.index:
            self._apply(found.container, _remove(found.container, found.index[key]))

    def commit(self, *, replaced: Target | None = None, replaced_config: Target | None = None) -> PatchResult:
        data = self.code.encode(self.tree.encoding)
        if data == self.doc.data:
            return PatchResult(changed=False)
        _write_atomic(self.doc.path, data, lambda written: _verify(written, self.expected))
        return PatchResult(
            changed=True, added_lines=tuple(self.added), replaced=replaced, replaced_config=replaced_config
        )

    def _find(self, table: _Table) -> _Found:
        found = _find(self.tree, table, self.doc.path)
        if found is None:
            raise _unreadable(self.doc.path, f"{table.variable} was not found at the top level")
        return found

    def _apply(self, old: _Container, new: _Container) -> None:
        self.tree = self.tree.deep_replace(old, new)
        code = self.tree.code
        self.added += new_lines(self.code, code)
        self.code = code


def _conflict(path: Path, table: _Table, key: str, current: Target, wanted: Target) -> OnboardError:
    return OnboardError(
        f"{table.key_label} {key!r} is already registered in {table.variable} to class {current[1]} of module "
        f"{current[0]}, not to {wanted[1]} of {wanted[0]}",
        where=str(path),
        fix=f"pass --replace to re-point the entry to {wanted[1]} (module {current[0]} stays untouched), "
        "or --name to onboard under another name",
        code="registry-conflict",
    )


# --------------------------------------------------------------------------------------------------------------------
# Layout: entries are rendered as text in the file's style, then parsed, so whitespace is exactly what we wrote


def _render_tuple(items: Sequence[str], *, indent: str, column: int, explode: bool = False) -> str:
    """One line when it fits (with its trailing comma), else one item per line, as ruff lays it out."""
    flat = "(" + ", ".join(items) + ")"
    if not explode and "\n" not in flat and column + len(flat) + 1 <= LINE_LENGTH:
        return flat
    inner = indent + INDENT
    return "(\n" + "".join(f"{inner}{item},\n" for item in items) + f"{indent})"


def _quoted(value: str) -> str:
    # Safe without escaping: validated names hold no quotes, backslashes or newlines.
    return f'"{value}"'


def _append(doc: _Document, container: _Container, table: _Table, key: str, target: Target) -> _Container:
    entries = list(container.elements)
    opening, closing = _bracket_names(container)
    close = getattr(container, closing)
    if not entries:
        indent = table.closing_indent + INDENT
        entry = table.render_entry(key, [_quoted(v) for v in target], indent).with_changes(comma=cst.Comma())
        return container.with_changes(
            elements=[entry],
            **{
                opening: getattr(container, opening).with_changes(whitespace_after=_newline(indent)),
                closing: close.with_changes(whitespace_before=_newline(table.closing_indent)),
            },
        )
    separator = _whitespace_before(container, len(entries) - 1)
    indent = _indent_of(separator)
    if indent is None:
        raise _unreadable(doc.path, f"{table.variable} is not laid out one entry per line")
    last = entries[-1]
    trailing = last.comma if isinstance(last.comma, cst.Comma) else cst.Comma()
    closing_ws = close.whitespace_before
    # A comment at the end of the old last line belongs to that line, not to the closing bracket we move past.
    own_comment = closing_ws.first_line if isinstance(closing_ws, cst.ParenthesizedWhitespace) else None
    between = separator.with_changes(first_line=own_comment or cst.TrailingWhitespace(), empty_lines=[])
    entries[-1] = last.with_changes(comma=trailing.with_changes(whitespace_after=between))
    entries.append(table.render_entry(key, [_quoted(v) for v in target], indent).with_changes(comma=trailing))
    if own_comment is not None:
        close = close.with_changes(whitespace_before=closing_ws.with_changes(first_line=cst.TrailingWhitespace()))
    return container.with_changes(elements=entries, **{closing: close})


def _remove(container: _Container, position: int) -> _Container:
    entries = list(container.elements)
    removed = entries.pop(position)
    opening, closing = _bracket_names(container)
    if not entries:
        empty = cst.SimpleWhitespace("")
        return container.with_changes(
            elements=[],
            **{
                opening: getattr(container, opening).with_changes(whitespace_after=empty),
                closing: getattr(container, closing).with_changes(whitespace_before=empty),
            },
        )
    if position < len(entries):
        return container.with_changes(elements=entries)
    # Dropping the last entry: the new last one takes its trailing comma and hands its line comment back.
    previous = entries[-1]
    between = previous.comma.whitespace_after
    entries[-1] = previous.with_changes(comma=removed.comma)
    close = getattr(container, closing)
    closing_ws = close.whitespace_before
    if isinstance(between, cst.ParenthesizedWhitespace) and isinstance(closing_ws, cst.ParenthesizedWhitespace):
        close = close.with_changes(whitespace_before=closing_ws.with_changes(first_line=between.first_line))
    return container.with_changes(elements=entries, **{closing: close})


def _retarget(doc: _Document, container: _Container, table: _Table, position: int, target: Target) -> _Entry:
    """Re-point one entry to ``target``, keeping its key, its tags, its comments and its layout where it fits."""
    entry = container.elements[position]
    _, old = table.split(entry)
    new_items = [_quoted(v) for v in target] + [_code(e.value) for e in old.elements[2:]]
    if "#" in _code(old):
        # Comments inside the tuple survive only if we swap the two strings and leave the rest alone.
        pairs = zip(old.elements[:2], new_items[:2], strict=True)
        swapped = [element.with_changes(value=cst.SimpleString(text)) for element, text in pairs]
        return table.with_target(entry, old.with_changes(elements=swapped + list(old.elements[2:])))
    entry_indent = _indent_of(_whitespace_before(container, position))
    try:
        indent, column = table.target_layout(entry, entry_indent or "")
    except _Shape:
        why = f"entry {position + 1} of {table.variable} is not laid out one item per line"
        raise _unreadable(doc.path, why) from None
    old_items = [_code(e.value) for e in old.elements]
    # A tuple split over lines although it would fit on one was split on purpose (ruff's magic trailing comma).
    on_purpose = "\n" in _code(old) and "\n" not in _render_tuple(old_items, indent=indent, column=column)
    text = _render_tuple(new_items, indent=indent, column=column, explode=on_purpose)
    return table.with_target(entry, cst.parse_expression(text))


def _bracket_names(container: _Container) -> tuple[str, str]:
    return ("lbracket", "rbracket") if isinstance(container, cst.List) else ("lbrace", "rbrace")


def _whitespace_before(container: _Container, position: int) -> cst.BaseParenthesizableWhitespace:
    if position == 0:
        return getattr(container, _bracket_names(container)[0]).whitespace_after
    return container.elements[position - 1].comma.whitespace_after


def _indent_of(whitespace: cst.BaseParenthesizableWhitespace) -> str | None:
    return whitespace.last_line.value if isinstance(whitespace, cst.ParenthesizedWhitespace) else None


def _newline(indent: str) -> cst.ParenthesizedWhitespace:
    return cst.ParenthesizedWhitespace(last_line=cst.SimpleWhitespace(indent))


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


# --------------------------------------------------------------------------------------------------------------------
# Writing


def _write_atomic(path: Path, data: bytes, verify: Callable[[Path], None]) -> None:
    """Write next to ``path``, check the copy, then swap it in; on any failure ``path`` is as it was."""
    try:
        atomic_write(path, data, check=verify)
    except OSError as exc:
        raise OnboardError(
            f"could not write {path}: {exc.strerror or exc}; the file is unchanged",
            where=str(path),
            fix="check that the checkout is writable and rerun",
            code="registry-write-failed",
        ) from exc


def _verify(written: Path, expected: Mapping[str, Mapping[str, Target | None]]) -> None:
    """The edited file must still be Python and must show exactly the entries the edit meant to leave."""
    try:
        ast.parse(written.read_bytes(), filename=str(written))
        registry = read_registry(written)
    except (SyntaxError, OnboardError) as exc:
        raise _not_verified(written, f"it no longer parses ({exc})") from exc
    tables = {ARCH_TABLE: registry.arch_mapping, CONFIG_TABLE: registry.config_registrations}
    for variable, entries in expected.items():
        for key, target in entries.items():
            if tables[variable].get(key) != target:
                raise _not_verified(written, f"{variable}[{key!r}] reads back as {tables[variable].get(key)!r}")


def _not_verified(written: Path, why: str) -> OnboardError:
    return OnboardError(
        f"the edited registry did not check out: {why}; the original file is unchanged",
        where=str(written),
        fix="report this with the registry.py that was being edited",
        code="registry-verify-failed",
    )


def new_lines(before: str, after: str) -> tuple[str, ...]:
    """The lines of ``after`` between the longest common head and tail: what one localized edit wrote."""
    old, new = before.splitlines(), after.splitlines()
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return tuple(new[head : len(new) - tail])


# --------------------------------------------------------------------------------------------------------------------
# Names: checked before they reach the file, so every literal we emit is a plain double-quoted string


def _check_class(value: str, label: str) -> None:
    _check(value, label, CLASS_NAME, "a Python class name such as ToyDenseForCausalLM")


def _check_target(module: str, class_name: str) -> None:
    _check(module, "module", MODULE_PATH, "a dotted lowercase module path such as nemo_automodel.components.models.x")
    _check_class(class_name, "class name")


def _check_model_type(value: str) -> None:
    _check(value, "model_type", MODEL_TYPE, "a lowercase model_type such as toy_dense", identifiers=False)


def _check(value: object, label: str, pattern: re.Pattern[str], wanted: str, *, identifiers: bool = True) -> None:
    valid = isinstance(value, str) and pattern.fullmatch(value) is not None
    if valid and identifiers:
        valid = not any(keyword.iskeyword(part) for part in value.split("."))
    if not valid:
        raise OnboardError(
            f"{label} {str(value)[:80]!r} is not {wanted}",
            where=label,
            fix=f"use {wanted}",
            code="invalid-name",
        )
