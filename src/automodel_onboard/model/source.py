"""Where a config comes from: a Hub id (one ``config.json`` download), a local file, or a checkpoint folder.

Only ``config.json`` is ever read. Hub access goes through ``huggingface_hub``, so ``HF_HUB_OFFLINE``,
``HF_HOME`` / ``HF_HUB_CACHE`` and ``HF_TOKEN`` behave as they do everywhere else. Nothing found next to the
config (``*.py`` files of custom-code models) is imported.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel_onboard.errors import OnboardError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # real configs are a few kB; anything this large is not a config


@dataclass(frozen=True)
class ConfigSource:
    """A parsed config and where it came from."""

    config: Mapping[str, Any]
    config_path: Path
    model_id: str | None = None
    revision: str | None = None
    folder: Path | None = None  # the local checkpoint folder, when the input was one


def split_revision(model: str, revision: str | None) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); an explicit ``revision`` must agree with the suffix."""
    if "@" in model:
        model, _, suffix = model.partition("@")
        if revision and revision != suffix:
            raise OnboardError(
                f"two revisions given: {suffix!r} after '@' and {revision!r} from --revision",
                where="model",
                fix="give the revision once",
                code="invalid-input",
            )
        revision = suffix
    if revision is not None and revision != "" and not REVISION.fullmatch(revision):
        raise OnboardError(
            f"revision {revision[:80]!r} is not a branch, tag or commit name",
            where="--revision",
            fix="use letters, digits and . _ - / only",
            code="invalid-input",
        )
    return model, revision or None


def load_source(model: str, revision: str | None = None) -> ConfigSource:
    """Resolve ``model`` (Hub id, ``config.json`` path or checkpoint folder) to a parsed config."""
    if not isinstance(model, str) or not model.strip():
        raise OnboardError("no model given", where="model", fix="pass org/name, a config.json or a folder")
    if "\x00" in model:
        raise OnboardError("the model argument contains a NUL character", where="model", code="invalid-input")
    path = Path(model).expanduser()
    if path.exists():
        if revision:
            raise OnboardError(
                f"--revision {revision!r} applies to Hub ids, but {model!r} is a local path",
                where="--revision",
                fix="drop --revision, or pass the Hub id",
            )
        return _load_local(path)
    if model.startswith((".", "/", "~")) or model.endswith(".json") or not HUB_ID.fullmatch(model.partition("@")[0]):
        raise OnboardError(
            f"{model!r} is neither an existing file or folder nor a Hub id of the form org/name",
            where=str(path.absolute()),
            fix="check the path, or pass a Hub id such as Qwen/Qwen3-0.6B",
            code="file-missing",
        )
    repo_id, revision = split_revision(model, revision)
    config_path = _download(repo_id, revision)
    return ConfigSource(read_config(config_path), config_path, model_id=repo_id, revision=revision)


def _load_local(path: Path) -> ConfigSource:
    folder = None
    if path.is_dir():
        folder, path = path, path / "config.json"
        if not path.is_file():
            raise OnboardError(
                f"the folder {folder} has no config.json",
                where=str(folder),
                fix="pass a checkpoint folder saved with save_pretrained, or the config.json itself",
                code="file-missing",
            )
    return ConfigSource(read_config(path), path, folder=folder)


def read_config(path: Path) -> dict[str, Any]:
    """Parse a config file strictly: a regular file, one JSON object, no NaN/Infinity, bounded size and depth."""
    try:
        # Non-blocking, so a FIFO cannot hold the open; its type is then checked on what was opened.
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise OnboardError(
            f"{path} does not exist", where=str(path), fix="check the path", code="file-missing"
        ) from exc
    except OSError as exc:
        raise OnboardError(
            f"cannot read {path}: {exc.strerror}", where=str(path), fix="check its permissions", code="environment"
        ) from exc
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OnboardError(
                f"{path} is not a regular file (a device, a pipe or a socket)",
                where=str(path),
                fix="pass the model's config.json, or a checkpoint folder that holds one",
                code="not-a-file",
            )
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(path.name, f"over {MAX_CONFIG_BYTES} bytes", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OnboardError(
            f"{path.name} is not UTF-8 text", where=str(path), fix="pass a JSON config", code="invalid-json"
        ) from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise OnboardError(
            f"invalid JSON: {exc.msg}",
            where=f"{path}, line {exc.lineno} column {exc.colno}",
            fix="correct the JSON syntax at that position",
            code="invalid-json",
        ) from exc
    except ValueError as exc:
        raise OnboardError(str(exc), where=str(path), fix="use finite numbers or null", code="invalid-json") from exc
    except RecursionError:
        raise OnboardError(
            "the JSON is nested too deeply for a config",
            where=str(path),
            fix="pass the model's config.json (configs nest a few levels at most)",
            code="invalid-json",
        ) from None
    if not isinstance(data, dict):
        raise OnboardError(
            f"the config must be a JSON object, got {type(data).__name__}",
            where=str(path),
            fix="pass a Hugging Face config.json (a JSON object with architectures, model_type, ...)",
            code="not-an-object",
        )
    return data


def _too_large(name: str, size: str, where: str) -> OnboardError:
    return OnboardError(
        f"{name} is {size}; a config.json is a few kilobytes",
        where=where,
        fix="pass the model's config.json",
        code="config-too-large",
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a config (JSON has no {name})")


# Hub failures, most specific first: (huggingface_hub error class, code, what is wrong, how to fix it).
# Messages are formatted with ``label`` (id@revision), ``repo_id`` and ``revision``.
HUB_FAILURES: tuple[tuple[str, str, str, str], ...] = (
    (
        "GatedRepoError",
        "hub-gated",
        "{label} is gated: its config can only be read after accepting the licence on the Hub",
        "accept the terms on the model page, then set HF_TOKEN (or run `hf auth login`)",
    ),
    (
        "RevisionNotFoundError",
        "hub-revision-not-found",
        "{repo_id} has no revision {revision!r}",
        "pass an existing branch, tag or commit with --revision",
    ),
    (
        "RepositoryNotFoundError",
        "hub-not-found",
        "{repo_id} is not on the Hub, or it is private and no valid token was sent",
        "check the id; for a private repository set HF_TOKEN (or run `hf auth login`)",
    ),
    (
        "RemoteEntryNotFoundError",
        "hub-no-config",
        "{label} has no config.json (it is not a transformers checkpoint)",
        "pass a repository saved with save_pretrained, or a local config.json",
    ),
    (
        "HfHubHTTPError",
        "hub-error",
        "the Hub refused the download of {label}/config.json: {error}",
        "retry later, or pass a local config.json",
    ),
)


def _require_small(repo_id: str, revision: str | None, label: str) -> None:
    """Refuse a config the Hub says is too large before its body is fetched (a cached copy needs no request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
        return
    try:
        size = get_hf_file_metadata(hf_hub_url(repo_id, "config.json", revision=revision)).size
    except HfHubHTTPError:
        raise
    except Exception:  # unreachable Hub and the like: the download that follows names the failure
        return
    if size is not None and size > MAX_CONFIG_BYTES:
        raise _too_large(f"{label}/config.json", f"{size} bytes on the Hub", f"https://huggingface.co/{repo_id}")


def _download(repo_id: str, revision: str | None) -> Path:
    """Fetch (or find in the local cache) the repo's config.json; every Hub failure becomes an OnboardError."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub import errors as hub_errors

    label = f"{repo_id}@{revision}" if revision else repo_id
    try:
        if not constants.HF_HUB_OFFLINE:
            _require_small(repo_id, revision, label)
        return Path(hf_hub_download(repo_id, "config.json", revision=revision))
    except hub_errors.LocalEntryNotFoundError as exc:
        raise OnboardError(
            f"{label}/config.json is not in the local Hugging Face cache"
            + (" and HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else " and the Hub could not be reached"),
            where=str(constants.HF_HUB_CACHE),
            fix=(
                "unset HF_HUB_OFFLINE and retry with network access, point HF_HOME/HF_HUB_CACHE at a cache that "
                "holds it, or pass a local config.json"
            ),
            code="hub-offline",
        ) from exc
    except hub_errors.HfHubHTTPError as exc:
        for name, code, what, fix in HUB_FAILURES:
            if isinstance(exc, getattr(hub_errors, name)):
                message = what.format(label=label, repo_id=repo_id, revision=revision, error=exc)
                raise OnboardError(message, where=f"https://huggingface.co/{repo_id}", fix=fix, code=code) from exc
        raise
    except OSError as exc:
        raise OnboardError(
            f"the Hugging Face cache cannot be used: {exc.strerror or exc}",
            where=str(exc.filename or constants.HF_HUB_CACHE),
            fix="set HF_HOME (or HF_HUB_CACHE) to a folder you may write, or pass a local config.json",
            code="environment",
        ) from exc
