"""Model provisioning: assembled from the offline packages, verified by SHA-256, refused when
tampered; device and compute type validated against this machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jozvesaz_cli.config import ModelSpec
from jozvesaz_cli.errors import ConfigError, ModelIntegrityError, ModelLoadError
from jozvesaz_cli.model_loader import (
    KNOWN_MODELS,
    assemble_from_packages,
    resolve_device,
    resolve_model,
    sha256_file,
)


def make_spec(models_dir: Path, name: str = "tiny.en", **extra: object) -> ModelSpec:
    values: dict[str, object] = {
        "name": name,
        "device": "cpu",
        "device_index": None,
        "compute_type": "default",
        "load_in_8bit": False,
        "cpu_threads": 1,
        "models_dir": models_dir,
        "allow_download": False,
    }
    values.update(extra)
    return ModelSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("models")
    assemble_from_packages(KNOWN_MODELS["tiny.en"], store)
    return store


def test_assemble_from_packages_matches_official_hashes(tiny_store: Path) -> None:
    folder = tiny_store / "tiny.en"
    for name, expected in KNOWN_MODELS["tiny.en"].sha256.items():
        assert sha256_file(folder / name) == expected
    assert not [p for p in tiny_store.iterdir() if p.name.endswith(".tmp")]


def test_resolve_model_prefers_the_store_and_verifies(tiny_store: Path) -> None:
    resolved = resolve_model(make_spec(tiny_store))
    assert resolved.source == "model store"
    assert resolved.verified


def test_resolve_model_assembles_base_from_two_packages(tmp_path: Path) -> None:
    resolved = resolve_model(make_spec(tmp_path, "base"))
    assert resolved.source == "offline packages"
    assert sha256_file(resolved.path / "model.bin") == KNOWN_MODELS["base"].sha256["model.bin"]
    assert (resolved.path / "model.bin").stat().st_size == 145217532


def test_resolve_model_refuses_tampered_file(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    weights = store / "tiny.en" / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as caught:
        resolve_model(make_spec(store))
    message = str(caught.value)
    assert str(weights) in message
    assert KNOWN_MODELS["tiny.en"].sha256["model.bin"] in message


def test_cli_tampered_model_exits_3(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    config = store / "tiny.en" / "config.json"
    config.write_bytes(config.read_bytes().replace(b"{", b"[", 1))
    result = subprocess.run(
        [sys.executable, "-m", "jozvesaz_cli", "models", "verify", "tiny.en"],
        env={
            "PATH": "/usr/bin:/bin",
            "JOZVESAZ_MODELS_DIR": str(store),
            "STORAGE_ROOT": str(tmp_path / "s"),
            "HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "config.json" in result.stderr
    assert KNOWN_MODELS["tiny.en"].sha256["config.json"] in result.stderr.replace("\n", "")


def test_resolve_model_unknown_offline_lists_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(make_spec(tmp_path, "large-v3"))
    message = str(caught.value)
    assert "large-v3" in message and "model store" in message and "download" in message
    assert caught.value.hint and "models pull large-v3" in caught.value.hint


def test_resolve_model_local_folder_with_spaces(tiny_store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models dir" / "tiny"
    shutil.copytree(tiny_store / "tiny.en", folder)
    resolved = resolve_model(make_spec(tmp_path / "empty", str(folder)))
    assert resolved.source == "local folder"
    assert resolved.path == folder


def test_resolve_device_default_is_int8_on_cpu(tmp_path: Path) -> None:
    choice = resolve_device(make_spec(tmp_path, device="auto"), gpu_count=0)
    assert (choice.device, choice.compute_type) == ("cpu", "int8")


def test_resolve_device_default_is_float16_on_gpu(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, device="auto")
    assert resolve_device(spec, gpu_count=1).compute_type == "float16"
    eight = make_spec(tmp_path, device="auto", load_in_8bit=True)
    assert resolve_device(eight, gpu_count=1).compute_type == "int8_float16"


def test_resolve_device_float16_on_cpu_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="TRANSCRIPTION_COMPUTE_TYPE=float16 is not supported on cpu"
    ):
        resolve_device(make_spec(tmp_path, compute_type="float16"), gpu_count=0)


def test_resolve_device_index_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TRANSCRIPTION_DEVICE_INDEX=3.*0 CUDA devices"):
        resolve_device(make_spec(tmp_path, device="auto", device_index=3), gpu_count=0)
    with pytest.raises(ConfigError, match="out of range: 1 CUDA device"):
        resolve_device(make_spec(tmp_path, device="cuda", device_index=3), gpu_count=1)


def test_resolve_device_cuda_without_gpu(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        resolve_device(make_spec(tmp_path, device="cuda"), gpu_count=0)
