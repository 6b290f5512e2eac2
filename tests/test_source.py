"""Resolving the input: local files and folders, the Hub through a real local cache, and every failure."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from conftest import hub_cache, load_config, run_cli

from automodel_onboard.errors import OnboardError
from automodel_onboard.model.source import load_source, read_config, split_revision

QWEN3 = load_config("Qwen__Qwen3-0.6B.json")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A Hugging Face cache under tmp_path, used by huggingface_hub exactly as HF_HUB_CACHE would be."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return root


def test_local_file_and_folder(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN3))
    from_file = load_source(str(path))
    from_folder = load_source(str(tmp_path))
    assert from_file.config == from_folder.config == QWEN3
    assert (from_file.folder, from_folder.folder) == (None, tmp_path)
    assert from_file.model_id is None


def test_hub_id_is_read_from_the_local_cache_offline(cache):
    hub_cache(cache, "Qwen/Qwen3-0.6B", QWEN3)
    source = load_source("Qwen/Qwen3-0.6B")
    assert source.config == QWEN3
    assert (source.model_id, source.revision) == ("Qwen/Qwen3-0.6B", None)
    assert source.config_path.is_relative_to(cache)


@pytest.mark.parametrize("spelling", ["Qwen/Qwen3-0.6B@v1.0", ("Qwen/Qwen3-0.6B", "v1.0")])
def test_revision_by_suffix_or_flag(cache, spelling):
    hub_cache(cache, "Qwen/Qwen3-0.6B", {**QWEN3, "rope_theta": 1.0}, revision="v1.0")
    hub_cache(cache, "Qwen/Qwen3-0.6B", QWEN3)
    model, revision = (spelling, None) if isinstance(spelling, str) else spelling
    source = load_source(model, revision)
    assert source.revision == "v1.0"
    assert source.config["rope_theta"] == 1.0


def test_conflicting_revisions_are_refused():
    with pytest.raises(OnboardError, match="two revisions given"):
        split_revision("org/name@a", "b")


def test_offline_and_not_cached_says_where_it_looked(cache):
    with pytest.raises(OnboardError) as info:
        load_source("org/not-cached")
    assert info.value.code == "hub-offline"
    assert "HF_HUB_OFFLINE" in info.value.what
    assert info.value.where == str(cache)


def test_missing_path(tmp_path):
    with pytest.raises(OnboardError) as info:
        load_source(str(tmp_path / "nope" / "config.json"))
    assert info.value.code == "file-missing"
    assert "neither an existing file" in info.value.what


def test_folder_without_config(tmp_path):
    with pytest.raises(OnboardError, match="has no config.json") as info:
        load_source(str(tmp_path))
    assert info.value.code == "file-missing"


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_type": "llama",\n  "hidden_size": 64,,\n}\n')
    with pytest.raises(OnboardError) as info:
        read_config(path)
    assert info.value.code == "invalid-json"
    assert info.value.where == f"{path}, line 3 column 21"


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "list"), ('"llama"', "str"), ("null", "NoneType")])
def test_json_that_is_not_an_object(tmp_path, text, kind):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(OnboardError, match=f"must be a JSON object, got {kind}") as info:
        read_config(path)
    assert info.value.code == "not-an-object"


def test_nan_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"rope_theta": NaN}')
    with pytest.raises(OnboardError, match="NaN is not valid") as info:
        read_config(path)
    assert info.value.code == "invalid-json"


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(OnboardError, match="not UTF-8"):
        read_config(path)


def test_remote_code_is_read_as_data(tmp_path):
    """A checkpoint folder with auto_map and a module that would leave a marker if imported."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = {**QWEN3, "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}, "model_type": "evil"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    source = load_source(str(tmp_path))
    assert source.config["auto_map"] == {"AutoConfig": "configuration_evil.EvilConfig"}
    assert not marker.exists()


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers like the Hub does for a missing, gated or revision-less repository (headers included)."""

    def do_HEAD(self):  # noqa: N802 - the stdlib's naming
        code = self.server.error_code  # type: ignore[attr-defined]
        self.send_response(404 if code != "GatedRepo" else 403)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", "fake hub")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("error_code", "code", "text"),
    [
        ("RepoNotFound", "hub-not-found", "is not on the Hub, or it is private"),
        ("GatedRepo", "hub-gated", "is gated"),
        ("RevisionNotFound", "hub-revision-not-found", "has no revision 'v9'"),
        ("EntryNotFound", "hub-no-config", "has no config.json"),
    ],
)
def test_hub_failures_through_the_cli(tmp_path, error_code, code, text):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    server.error_code = error_code  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "HF_HOME": str(tmp_path / "home"),
            "HF_HUB_ETAG_TIMEOUT": "5",
        }
        result = run_cli("classify", "org/missing", "--revision", "v9", "--json", "--no-inventory", env=env)
    finally:
        server.shutdown()
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)
    assert error["error"] == code
    assert text in error["message"]
    assert "how to fix" in result.stderr
    if code in ("hub-gated", "hub-not-found"):
        assert "HF_TOKEN" in error["fix"]


def test_cli_reads_the_hub_cache_named_by_hf_home(tmp_path):
    hub_cache(tmp_path / "home" / "hub", "Qwen/Qwen3-0.6B", QWEN3)
    result = run_cli("classify", "Qwen/Qwen3-0.6B", "--json", "--no-inventory", env={"HF_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert (spec["model_id"], spec["architecture"], spec["kind"]) == ("Qwen/Qwen3-0.6B", "Qwen3ForCausalLM", "dense")
