"""``automodel-onboard new``: source -> spec -> checks -> render + register -> verify, with a report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel_onboard import destination, interrupts, kinds, verify
from automodel_onboard.destination import Destination, Paths, Plan
from automodel_onboard.destination.plugin import Plugin
from automodel_onboard.errors import OnboardError
from automodel_onboard.model.spec import cached_spec, remember_spec
from automodel_onboard.render import copier_run

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    model: str
    dest: Path  # a NeMo AutoModel checkout, or with plugin a plugin package folder (created when absent)
    name: str | None = None
    kind: str | None = None
    revision: str | None = None
    dataset: str | None = None
    replace: bool = False
    allow_fewer_capabilities: bool = False  # --replace may re-point to a model declaring fewer parallelisms
    allow_unsupported: bool = False
    verify: bool = True
    # Run the local checkpoint folder's own code (auto_map) as the reference, for models transformers lacks.
    trust_remote_code: bool = False
    plugin: bool = False  # dest is an out-of-tree plugin package


@dataclass(frozen=True)
class Report:
    spec: dict[str, Any]
    answers: copier_run.Answers
    paths: Paths
    destination: Plan
    rendered: copier_run.Rendered
    verification: verify.Verification | None
    warnings: tuple[str, ...]
    log: Path | None = None  # the generated tests' whole output, third-party noise included


def _quiet(_: str) -> None:
    pass


def model_argument(model: str) -> str:
    """Local paths are recorded absolute, so ``copier update`` finds them from any working directory."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def new(request: Request, progress: Progress = _quiet) -> Report:
    """Onboard one model; raises OnboardError (destination untouched) on any refusal or failure."""
    dest = destination.at(request.dest.resolve(), destination.PLUGIN if request.plugin else destination.CHECKOUT)
    dest.require()
    model = model_argument(request.model)
    progress("reading the config")
    recovered = _check_early(dest, model, request, progress)
    progress("loading the reference inventory")
    built = cached_spec(model, request.revision or "", request.trust_remote_code)
    kind = _kind(built.kind, request)
    spec_obj = (built.renamed(request.name, existing=frozenset()) if request.name else built).for_kind(kind.name)
    spec = spec_obj.to_dict()
    warnings = list(_refusals(spec, request))
    answers = copier_run.answers_for(
        spec,
        model,
        kind=kind.name,
        revision=built.revision,
        module_name=request.name,
        dataset=request.dataset,
        replace=request.replace,
        trust_remote_code=request.trust_remote_code,
        destination=destination.PLUGIN if request.plugin else destination.CHECKOUT,
        plugin_package=dest.package if isinstance(dest, Plugin) else "",
    )
    remember_spec(answers.model, answers.revision, answers.trust_remote_code, built)
    if recovered is not None:
        warnings.insert(0, recovered.summary())
    with dest.lock(progress):
        plan = dest.check(
            spec,
            module_name=answers.module_name,
            kind=kind,
            replace=request.replace,
            allow_fewer_capabilities=request.allow_fewer_capabilities,
        )
        if plan.dirty:
            warnings.append(
                f"the destination has uncommitted changes ({', '.join(plan.dirty[:10])}"
                + (", ..." if len(plan.dirty) > 10 else "")
                + "); the onboarding touches none of them but "
                + (", ".join(rel.name for rel in dest.patched) or "its own new files")
            )
            progress(f"warning: {warnings[-1]}")
        if plan.replaces and request.plugin:
            module, cls = plan.replaces
            warnings.append(
                f"{spec['architecture']} replaces NeMo AutoModel's {module}.{cls} only once "
                f"{answers.plugin_package}.{answers.module_name}.register() is called (an entry point cannot)"
            )
        elif plan.replaces:
            module, cls = plan.replaces
            warnings.append(f"{spec['architecture']} is re-pointed from {module}.{cls}; that module stays untouched")
            if plan.fewer_capabilities:
                lost = " and ".join(plan.fewer_capabilities)
                warnings.append(f"runs of {spec['architecture']} lose {lost}, which {module}.{cls} declares")
        elif request.replace:
            warnings.append(f"--replace has nothing to re-point: {spec['architecture']} was not registered")
        rendered = copier_run.render(dest, answers, spec, progress=progress)
    paths = dest.paths(answers.module_name, kind, spec["org"])
    verification = None
    if request.verify:
        progress(f"running the generated tests in {paths.tests}")
        verification = verify.run_generated_tests(
            dest.root, Path(paths.tests), progress=progress, plugin=request.plugin
        )
    log = interrupts.write_log(f"tests-{answers.module_name}", verification.output) if verification else None
    return Report(spec, answers, paths, plan, rendered, verification, tuple(warnings), log)


def _check_early(dest: Destination, model: str, request: Request, progress: Progress) -> Any:
    """The destination checks that need no reference, before it is loaded: such refusals come in about a second.

    An interrupted earlier run is rolled back first (its files would otherwise read as existing ones).
    """
    from automodel_onboard.model.source import load_source
    from automodel_onboard.model.spec import build_spec

    quick = build_spec(load_source(model, request.revision or None), module_name=request.name, with_inventory=False)
    kind = _kind(quick.kind, request)
    with dest.lock(progress):
        recovered = dest.recover()
        if recovered is not None:
            progress(f"warning: {recovered.summary()}")
        spec = {"architecture": quick.architecture, "org": quick.org}
        dest.check(spec, module_name=request.name or quick.module_name, kind=kind, replace=request.replace)
    return recovered


def _kind(detected: str, request: Request) -> kinds.Kind:
    """The kind to render: ``--kind`` or the verdict; refused (no-template) when it has no template."""
    return kinds.get(request.kind or detected, where="--kind" if request.kind else "config.json")


@dataclass(frozen=True)
class Assessment:
    """What ``new`` decides about a model before it renders anything, with its default answers."""

    kind: str  # the kind its spec classifies as; "unsupported" or "-" where no spec could be built
    refusal: OnboardError | None
    reasons: tuple[str, ...] = ()  # what a refusal names, one feature each where the layout lists them


def assess(model: str) -> Assessment:
    """The checks of ``new`` that need no destination, for a sweep that renders nothing."""
    request = Request(model=model, dest=Path())
    try:
        built = cached_spec(model_argument(model))
    except OnboardError as err:
        return Assessment("unsupported" if err.code.startswith("unsupported") else "-", err, (err.what,))
    try:
        spec = built.for_kind(_kind(built.kind, request).name).to_dict()
    except OnboardError as err:
        return Assessment(built.kind, err, (err.what,))
    try:
        _refusals(spec, request)
    except OnboardError as err:
        return Assessment(spec["kind"], err, tuple((spec.get("layout") or {}).get("gaps") or ()) or (err.what,))
    return Assessment(spec["kind"], None)


def _refusals(spec: dict[str, Any], request: Request) -> list[str]:
    """Refuse what the templates cannot verify; return the warnings for what is rendered anyway."""
    warnings = []
    if request.kind and request.kind != spec["kind"]:
        warnings.append(
            f"rendering the {request.kind} template although the config classifies as {spec['kind']}: "
            "the generated parity tests are expected to fail"
        )
    unsupported = tuple((spec.get("layout") or {}).get("gaps") or ())
    if unsupported:
        if not request.allow_unsupported:
            raise OnboardError(
                "the config uses features the template does not implement: " + "; ".join(unsupported),
                where="config.json",
                fix="pass --allow-unsupported to render anyway (the parity tests are then expected to fail and "
                "name the first diverging layer), or extend the template",
                code="unsupported-features",
            )
        warnings.append("rendered with unimplemented features; the parity tests are expected to fail")
    if spec["hf"] is None and spec.get("remote_code") is None:
        raise OnboardError(
            f"{spec['architecture']} has no transformers implementation: its only reference is remote code "
            "(auto_map), which this tool never runs, so the generated parity tests would have nothing to compare with",
            where="config.json: auto_map" if spec["custom_code"] else "config.json: model_type",
            fix="onboard a model whose architecture transformers implements, or port the reference into transformers "
            "first"
            + (
                "; or, if you trust the model's code, pass --trust-remote-code with its local checkpoint folder"
                if spec["custom_code"]
                else ""
            ),
            code="remote-code",
        )
    return warnings
