"""``--push-to-hub``: the upload goes through huggingface_hub's HfApi (mocked here: no network)."""

from __future__ import annotations

import json

import pytest
import torch

from codectts.configuration.moss.audio_tokenizer import CodecTTSAudioTokenizerConfig
from codectts.conversion.export import export_folder, push_folder_to_hub
from codectts.hub_cards import extract_usage_snippet
from codectts.modeling.moss.audio_tokenizer import CodecTTSAudioTokenizerModel


class FakeHfApi:
    """Records the calls that the exporter makes; ``instances`` keeps every api object created."""

    instances: list["FakeHfApi"] = []

    def __init__(self, token=None, **kwargs):
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        FakeHfApi.instances.append(self)

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        from pathlib import Path

        uploaded = sorted(
            p.relative_to(kwargs["folder_path"]).as_posix() for p in Path(kwargs["folder_path"]).rglob("*")
        )
        self.calls.append(("upload_folder", {**kwargs, "files": uploaded}))
        return "commit-info"


@pytest.fixture
def fake_api(monkeypatch):
    import huggingface_hub

    FakeHfApi.instances = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


@pytest.fixture(scope="module")
def converted_codec(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("converted") / "codec"
    CodecTTSAudioTokenizerModel(CodecTTSAudioTokenizerConfig.tiny()).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("private", "create_pr"), [(False, False), (True, True)])
def test_export_folder_pushes_the_exported_folder(fake_api, converted_codec, tmp_path, private, create_pr):
    dst = export_folder(
        converted_codec, tmp_path / "out", push_to_hub="someone/tiny-codec", private=private, create_pr=create_pr
    )
    (api,) = fake_api.instances
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {
        "repo_id": "someone/tiny-codec",
        "repo_type": "model",
        "private": private,
        "exist_ok": True,
    }
    upload = api.calls[1][1]
    assert upload["folder_path"] == str(dst) and upload["repo_id"] == "someone/tiny-codec"
    assert upload["repo_type"] == "model" and upload["create_pr"] is create_pr
    assert "codectts" in upload["commit_message"]
    assert {"README.md", "config.json", "model.safetensors", "modeling_moss_audio_tokenizer.py"} <= set(upload["files"])
    # the card's snippet loads from the repo that was pushed to
    assert 'AutoModel.from_pretrained("someone/tiny-codec", trust_remote_code=True)' in extract_usage_snippet(
        (dst / "README.md").read_text()
    )
    assert "AutoModel" in json.loads((dst / "config.json").read_text())["auto_map"]


def test_push_passes_the_token_and_refuses_bad_input(fake_api, converted_codec, tmp_path):
    assert push_folder_to_hub(converted_codec, "someone/x", token="hf_secret") == "commit-info"
    assert fake_api.instances[-1].token == "hf_secret"
    with pytest.raises(ValueError, match="invalid Hub repo id"):
        push_folder_to_hub(converted_codec, "a/b/c")
    with pytest.raises(FileNotFoundError, match="not an exported model folder"):
        push_folder_to_hub(tmp_path, "someone/x")
    assert len(fake_api.instances) == 1  # nothing was uploaded for the bad inputs


def test_no_push_without_a_repo(fake_api, converted_codec, tmp_path):
    export_folder(converted_codec, tmp_path / "out")
    assert fake_api.instances == []
