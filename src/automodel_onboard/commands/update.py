"""``automodel-onboard update``: regenerate onboarded models from a newer template version with ``copier update``.

Each onboarded model keeps its answers in ``nemo_automodel/components/models/<name>/.copier-answers.yml``; ``_commit``
there is the template version it was rendered from (a commit, or a tag where one exists). Copier merges the
template's changes since that version with the user's edits (a 3-way merge: edits elsewhere survive, edits at the same
place become inline conflict markers or ``.rej`` files) and runs the ``_migrations`` (each a no-op once applied).

Copier refuses a destination with uncommitted changes, and each update leaves changes behind, so every model is
updated in its own temporary clone of the destination's ``HEAD``; the changed files are copied back only once all
models have been updated. A failure leaves the destination untouched. The registry task is run here rather than by
Copier, which would also run it in its scratch renders (they hold no ``registry.py``); it is idempotent, so the
registry normally stays byte-identical, and its entry for the architecture is counted afterwards (exactly one).

The same update by hand, one model at a time, in a clean checkout (the settings file gives the scratch renders the
``checked: true`` this module passes as a user default; the registry is left as it is)::

    echo 'defaults: {checked: true}' > onboard-settings.yml
    COPIER_SETTINGS_PATH=onboard-settings.yml copier update --trust --skip-tasks --defaults -a <answers file>

where ``<answers file>`` is ``nemo_automodel/components/models/<name>/.copier-answers.yml``.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from automodel_onboard import destination
from automodel_onboard.destination import Destination
from automodel_onboard.destination.checkout import Checkout
from automodel_onboard.errors import OnboardError
from automodel_onboard.files import atomic_write

CONFLICT_MODES = ("inline", "rej")
CONFLICT_MARKERS = (b"<<<<<<< before updating", b">>>>>>> after updating")
EXIT_OK, EXIT_CONFLICTS = 0, 1
# Commits are only ever made in the temporary clones, never in the user's checkout.
GIT_USER, GIT_EMAIL = "automodel-onboard update", "update@automodel-onboard.invalid"


@dataclass(frozen=True)
class ModelUpdate:
    """What updating one model did."""

    name: str
    architecture: str
    old_commit: str | None  # the template version (``git describe``: a tag, or a commit) recorded before and after
    new_commit: str | None
    files_changed: tuple[str, ...]  # relative to the checkout
    conflicts: tuple[str, ...]  # files holding conflict markers, and .rej files
    registry_entries: int  # entries for the architecture in the parsed MODEL_ARCH_MAPPING (a plugin's entry points)
    registry_text_entries: int  # occurrences of the architecture as a key in the table's source text
    registry: str = "MODEL_ARCH_MAPPING"  # the table counted
    registry_expected: int = 1  # a plugin model replacing NeMo AutoModel's own has no entry point

    @property
    def registry_ok(self) -> bool:
        return self.registry_entries == self.registry_text_entries == self.registry_expected


@dataclass(frozen=True)
class UpdateReport:
    dest: Path
    models: tuple[ModelUpdate, ...]

    @property
    def conflicts(self) -> tuple[str, ...]:
        return tuple(path for model in self.models for path in model.conflicts)

    @property
    def ok(self) -> bool:
        return not self.conflicts and all(m.registry_ok for m in self.models)


@dataclass(frozen=True)
class _Onboarded:
    name: str
    answers_path: Path  # relative to the checkout
    answers: Mapping[str, Any]


# --------------------------------------------------------------------------------------------------------------------
# The update


def update(
    dest: Path,
    names: Sequence[str] | None = None,
    *,
    template: Path | None = None,
    vcs_ref: str | None = None,
    conflict: str = "inline",
    plugin: bool = False,
) -> UpdateReport:
    """Update the onboarded models ``names`` (None: every one found) in the checkout (or ``plugin``) ``dest``.

    ``template`` overrides the template path the answers record; ``vcs_ref`` is the template version to update to
    (default: its newest). Raises OnboardError, with ``dest`` untouched, for a refusal or a failed update.
    """
    dest = Path(dest).resolve()
    if conflict not in CONFLICT_MODES:
        raise OnboardError(
            f"unknown conflict mode {conflict!r}", where="conflict", fix=f"use one of {', '.join(CONFLICT_MODES)}"
        )
    if plugin and not dest.is_dir():
        raise OnboardError(
            f"{dest} is not a folder", where=str(dest), fix="pass the plugin's folder", code="not-a-plugin"
        )
    checkout = destination.at(dest, destination.PLUGIN if plugin else destination.CHECKOUT)
    checkout.require()
    with checkout.lock(), tempfile.TemporaryDirectory(prefix="automodel-onboard-update-") as tmp:
        _require_clean_repository(checkout)
        models = _select(onboarded_models(checkout), names, checkout)
        staged = [
            _update_in_clone(dest, Path(tmp) / model.name, model, template, vcs_ref, conflict) for model in models
        ]
        _require_disjoint(staged, dest)
        for clone, result in staged:
            _copy_back(clone, dest, result.files_changed)
        return UpdateReport(dest, tuple(_with_registry_counts(checkout, result) for _, result in staged))


def onboarded_models(dest: Destination) -> tuple[_Onboarded, ...]:
    """Every model of the checkout that has an answers file, by name."""
    found = []
    for rel in dest.answers_files():
        answers = yaml.safe_load((dest.root / rel).read_text(encoding="utf-8")) or {}
        found.append(_Onboarded(rel.parent.name, rel, answers))
    return tuple(found)


def _select(models: Sequence[_Onboarded], names: Sequence[str] | None, dest: Any) -> tuple[_Onboarded, ...]:
    by_name = {m.name: m for m in models}
    if not by_name:
        raise OnboardError(
            f"no onboarded model in {dest.root}: no answers file of this tool under {dest.models}",
            where=str(dest.models),
            fix="onboard a model first with `automodel-onboard new MODEL --dest DIR`",
            code="not-onboarded",
        )
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise OnboardError(
            f"not onboarded with this tool (no answers file): {', '.join(unknown)}",
            where=str(dest.models),
            fix=f"onboarded models here: {', '.join(sorted(by_name))}",
            code="not-onboarded",
        )
    return tuple(by_name[n] for n in dict.fromkeys(names)) if names else tuple(by_name.values())


def _require_clean_repository(checkout: Destination) -> None:
    dest = checkout.root
    top = _git(dest, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != dest:
        raise OnboardError(
            f"{dest} is not the root of a git repository; copier update merges through git",
            where=str(dest),
            fix="pass the root of the NeMo AutoModel clone with --dest, or make the checkout a repository first "
            "(`git init && git add -A && git commit -m 'before update'`)",
            code="not-a-git-repo",
        )
    dirty = checkout.dirty()
    if dirty:
        raise OnboardError(
            f"the checkout has uncommitted changes ({', '.join(dirty[:10])}{', ...' if len(dirty) > 10 else ''}); "
            "copier update only runs on a clean work tree, so that its changes can be reviewed and undone with git",
            where=str(dest),
            fix="commit or stash your changes first (`git stash -u`), then rerun the update",
            code="dirty-destination",
        )


def _update_in_clone(
    dest: Path, clone: Path, model: _Onboarded, template: Path | None, vcs_ref: str | None, conflict: str
) -> tuple[Path, ModelUpdate]:
    """Run copier update for one model in a fresh clone of ``dest``; the clone's changes are the result."""
    import copier

    _git(dest, "clone", "-q", "--local", str(dest), str(clone))
    base = _git(clone, "rev-parse", "HEAD").stdout.strip()
    if template is not None:
        _point_at_template(clone, model.answers_path, Path(template).resolve())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Copier's DirtyLocalWarning when the template is a work tree
            copier.run_update(
                dst_path=clone,
                answers_file=str(model.answers_path),
                defaults=True,
                unsafe=True,
                overwrite=True,
                skip_answered=True,
                conflict=conflict,
                quiet=True,
                vcs_ref=vcs_ref,
                # Copier's scratch renders are not checkouts: the destination checks are ours (a clean checkout).
                user_defaults={"checked": True},
                skip_tasks=True,
            )
        new_answers = yaml.safe_load((clone / model.answers_path).read_text(encoding="utf-8")) or {}
        architecture = _register(clone, model.name, new_answers)
    except OnboardError:
        raise
    except Exception as exc:  # Copier reports template, merge and migration failures as many types
        raise OnboardError(
            f"updating {model.name} failed: {type(exc).__name__}: {_first_line(exc)}",
            where=str(dest / model.answers_path),
            fix="nothing was changed in the checkout; fix the cause above (or pass --vcs-ref) and rerun",
            code="update-failed",
        ) from exc
    changed = _changed_files(clone, base)
    return clone, ModelUpdate(
        name=model.name,
        architecture=architecture,
        old_commit=_str_or_none(model.answers.get("_commit")),
        new_commit=_str_or_none(new_answers.get("_commit")),
        files_changed=changed,
        conflicts=_conflicts(clone, changed),
        registry_entries=0,
        registry_text_entries=0,
    )


def _register(checkout: Path, name: str, answers: Mapping[str, Any]) -> str:
    """What copier.yml's registry (or plugin) task does, in ``checkout``; returns the architecture."""
    from automodel_onboard.render.copier_ext import spec_dict

    model, revision, trusted = (
        str(answers["model"]),
        str(answers.get("revision") or ""),
        answers.get("trust_remote_code"),
    )
    spec = spec_dict(model, revision, name, bool(trusted), str(answers.get("kind") or ""))
    where = destination.at(
        checkout, str(answers.get("destination") or destination.CHECKOUT), answers.get("plugin_package")
    )
    where.register(spec, name, replace=bool(answers.get("replace")))
    return spec["architecture"]


def _point_at_template(clone: Path, answers: Path, template: Path) -> None:
    """Record ``template`` as the answers' ``_src_path``, committed in the clone so Copier sees a clean tree."""
    path = clone / answers
    line = yaml.safe_dump({"_src_path": str(template)}, default_flow_style=False).strip()
    text = re.sub(r"(?m)^_src_path:.*$", lambda _: line, path.read_text(encoding="utf-8"), count=1)
    if text != path.read_text(encoding="utf-8"):
        path.write_text(text, encoding="utf-8")
        _git(clone, "commit", "-q", "--no-verify", "-m", "template source", "--", str(answers), identity=True)


def _changed_files(clone: Path, base: str) -> tuple[str, ...]:
    """Paths that differ between the clone's work tree and ``base`` (the destination's HEAD), new files included."""
    tracked = _git(clone, "diff", "--name-only", "--no-renames", "-z", base).stdout.split("\0")
    untracked = _git(clone, "ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
    return tuple(sorted({path for path in (*tracked, *untracked) if path}))


def _conflicts(checkout: Path, changed: Sequence[str]) -> tuple[str, ...]:
    found = []
    for rel in changed:
        path = checkout / rel
        if rel.endswith(".rej"):
            found.append(rel)
        elif path.is_file() and any(line.rstrip() in CONFLICT_MARKERS for line in path.read_bytes().splitlines()):
            found.append(rel)
    return tuple(found)


def _require_disjoint(staged: Sequence[tuple[Path, ModelUpdate]], dest: Path) -> None:
    """Two models' updates may not change the same file differently (their folders are disjoint; registry.py)."""
    seen: dict[str, tuple[str, bytes | None]] = {}
    for clone, result in staged:
        for rel in result.files_changed:
            content = (clone / rel).read_bytes() if (clone / rel).is_file() else None
            if rel in seen and seen[rel][1] != content:
                raise OnboardError(
                    f"the updates of {seen[rel][0]} and {result.name} change {rel} differently",
                    where=str(dest / rel),
                    fix="update those models one at a time (--name), committing in between",
                    code="update-overlap",
                )
            seen[rel] = (result.name, content)


def _copy_back(clone: Path, dest: Path, files: Sequence[str]) -> None:
    for rel in files:
        source, target = clone / rel, dest / rel
        if not source.exists():
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, source.read_bytes(), mode_from=source)


# --------------------------------------------------------------------------------------------------------------------
# The registry entry count


def _with_registry_counts(dest: Destination, result: ModelUpdate) -> ModelUpdate:
    from dataclasses import replace

    if isinstance(dest, Checkout):
        parsed, text = registry_counts(dest.registry, result.architecture)
        return replace(result, registry_entries=parsed, registry_text_entries=text)
    from automodel_onboard.destination.plugin import PYPROJECT, entry_counts

    answers = yaml.safe_load((dest.models / result.name / ".copier-answers.yml").read_text(encoding="utf-8")) or {}
    parsed, text = entry_counts(dest.root / PYPROJECT, result.architecture)
    expected = 0 if answers.get("replace") else 1
    return replace(
        result,
        registry_entries=parsed,
        registry_text_entries=text,
        registry=f"{PYPROJECT}'s entry points",
        registry_expected=expected,
    )


def registry_counts(registry: Path, architecture: str) -> tuple[int, int]:
    """Entries for ``architecture``: in the parsed table (0 or 1), and as keys in the table's source text.

    The second count sees what the first cannot: a repeated key, which an OrderedDict silently collapses.
    """
    from automodel_onboard.destination.registry_patch import ARCH_TABLE, read_registry

    parsed = 1 if architecture in read_registry(registry).arch_mapping else 0
    source = registry.read_text(encoding="utf-8")
    table = _table_source(source, ARCH_TABLE)
    key = re.compile(r"\(\s*(['\"])" + re.escape(architecture) + r"\1\s*,")
    return parsed, len(key.findall(table))


def _table_source(source: str, variable: str) -> str:
    for node in ast.parse(source).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
            return ast.get_source_segment(source, node) or ""
    return ""


# --------------------------------------------------------------------------------------------------------------------
# Helpers


def _git(cwd: Path, *args: str, check: bool = True, identity: bool = False) -> subprocess.CompletedProcess:
    # GIT_* variables (set inside a git hook, say) would point git at another repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    config = ("-c", f"user.name={GIT_USER}", "-c", f"user.email={GIT_EMAIL}") if identity else ()
    result = subprocess.run(["git", *config, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise OnboardError(
            f"git {' '.join(args[:2])} failed: {result.stderr.strip()[:400]}",
            where=str(cwd),
            fix="check that git works in the checkout, then rerun",
            code="git-failed",
        )
    return result


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return text.splitlines()[0][:400]


# --------------------------------------------------------------------------------------------------------------------
# Command line


def add_update_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("update", help="regenerate onboarded models from a newer template version")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dest", help="root of the NeMo AutoModel checkout (a clean git work tree)")
    where.add_argument("--plugin", help="folder of a plugin package made by `new --plugin` (a clean git work tree)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", action="append", help="model to update (repeatable)")
    which.add_argument("--all", action="store_true", help="update every model that has an answers file")
    p.add_argument("--vcs-ref", help="template version (commit or tag) to update to (default: the newest)")
    p.add_argument("--template", help="template repository to update from (default: the one the answers record)")
    p.add_argument("--conflict", choices=CONFLICT_MODES, default="inline", help="how to leave conflicts")
    p.set_defaults(func=cmd_update)
    return p


def cmd_update(args: argparse.Namespace, out: TextIO, err_out: TextIO) -> int:
    """0 when every model updated cleanly, 1 with conflicts or a wrong registry count, 2 for a refusal."""
    report = update(
        Path(args.plugin or args.dest),
        None if args.all else args.name,
        template=Path(args.template) if args.template else None,
        vcs_ref=args.vcs_ref,
        conflict=args.conflict,
        plugin=args.plugin is not None,
    )
    print(report_text(report), file=out)
    return EXIT_OK if report.ok else EXIT_CONFLICTS


def report_text(report: UpdateReport) -> str:
    lines = []
    for m in report.models:
        lines.append(f"{m.name}: template {m.old_commit} -> {m.new_commit}")
        lines += [f"    changed  {path}" for path in m.files_changed] or ["    (no file changed)"]
        lines += [f"    CONFLICT {path}" for path in m.conflicts]
        state = "ok" if m.registry_ok else "WRONG"
        lines.append(
            f"    registry: {m.architecture} has {m.registry_entries} entry in {m.registry} "
            f"({m.registry_text_entries} in its text; {m.registry_expected} expected): {state}"
        )
    if report.conflicts:
        lines.append(
            "  next: resolve the conflicts (search for '<<<<<<< before updating', or apply the .rej files), "
            "rerun the generated tests, then commit"
        )
    else:
        lines.append(f"  next: review `git -C {report.dest} diff`, rerun the generated tests, then commit")
    return "\n".join(lines)
