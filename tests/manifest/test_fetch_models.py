"""scripts/fetch_models.py against a real HTTP server on 127.0.0.1: downloads, resume, hashes, exit codes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from avatar_driver import paths
from avatar_driver.manifest import ManifestError, load_manifest
from scripts import fetch_models
from tests.manifest.manifests import entry, write_manifest

REPO = paths.REPO_ROOT


def run(manifest, target, *args: str) -> int:
    return fetch_models.main(["--manifest", str(manifest), "--target", str(target), *args])


@pytest.fixture
def models(tmp_path):
    return tmp_path / "models"


def test_downloads_verifies_and_second_run_downloads_nothing(file_server, served, tmp_path, models, capsys):
    path, data = served()
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", data, url=file_server.url(path)))

    assert run(manifest, models) == fetch_models.EXIT_OK
    assert (models / "checkpoints" / "base.safetensors").read_bytes() == data
    assert not list((models / ".fetch_models" / "partial").rglob("*.part"))
    assert len(file_server.gets(path)) == 1

    assert run(manifest, models) == fetch_models.EXIT_OK
    assert len(file_server.gets(path)) == 1, "second run must not download again"
    assert "present" in capsys.readouterr().err


def test_hash_mismatch_deletes_the_download_and_fails(file_server, served, tmp_path, models, capsys):
    path, data = served()
    bad = entry("base", data, url=file_server.url(path), sha256="0" * 64)
    manifest = write_manifest(tmp_path / "m.yaml", bad)

    assert run(manifest, models) == fetch_models.EXIT_FAILED
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and "deleted" in err and hashlib.sha256(data).hexdigest() in err
    assert not (models / "checkpoints" / "base.safetensors").exists()
    assert not list(models.rglob("*.part"))


def test_interrupted_download_resumes_with_range_on_the_next_run(file_server, served, tmp_path, models, capsys):
    path, data = served(300_000)
    file_server.cuts[path] = 120_000
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", data, url=file_server.url(path)))

    assert run(manifest, models, "--retries", "1") == fetch_models.EXIT_FAILED
    part = models / ".fetch_models" / "partial" / "checkpoints" / "base.safetensors.part"
    assert part.stat().st_size == 120_000
    assert "to resume" in capsys.readouterr().err

    assert run(manifest, models) == fetch_models.EXIT_OK
    assert [r.range for r in file_server.gets(path)] == [None, "bytes=120000-"]
    assert (models / "checkpoints" / "base.safetensors").read_bytes() == data
    assert not part.exists()


def test_a_cut_connection_is_retried_within_the_run(file_server, served, tmp_path, models):
    path, data = served(300_000)
    file_server.cuts[path] = 50_000
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", data, url=file_server.url(path)))

    assert run(manifest, models, "--retries", "2") == fetch_models.EXIT_OK
    assert [r.range for r in file_server.gets(path)] == [None, "bytes=50000-"]
    assert (models / "checkpoints" / "base.safetensors").read_bytes() == data


def test_404_fails_naming_the_url_and_the_file(file_server, tmp_path, models, capsys):
    missing = file_server.url("/nowhere/missing.safetensors")
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", b"x", url=missing))

    assert run(manifest, models) == fetch_models.EXIT_FAILED
    err = capsys.readouterr().err
    assert "HTTP 404" in err and missing in err and "checkpoints/base.safetensors" in err
    assert not (models / "checkpoints" / "base.safetensors").exists()


def test_a_file_already_on_disk_is_verified_not_downloaded(file_server, served, tmp_path, models):
    path, data = served()
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", data, url=file_server.url(path)))
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "base.safetensors").write_bytes(data)

    assert run(manifest, models) == fetch_models.EXIT_OK
    assert file_server.gets(path) == []
    assert (models / ".fetch_models" / "verified" / "checkpoints" / "base.safetensors.json").is_file()


def test_a_corrupt_file_on_disk_fails_verify_and_is_replaced_by_a_fetch(file_server, served, tmp_path, models, capsys):
    path, data = served()
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", data, url=file_server.url(path)))
    dest = models / "checkpoints" / "base.safetensors"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(bytes(len(data)))  # right size, wrong bytes

    assert run(manifest, models, "--verify") == fetch_models.EXIT_NOT_VERIFIED
    assert "sha256" in capsys.readouterr().err
    assert run(manifest, models) == fetch_models.EXIT_OK
    assert dest.read_bytes() == data
    assert run(manifest, models, "--verify") == fetch_models.EXIT_OK


def test_verify_is_offline_and_reports_missing_and_unpinned(file_server, served, tmp_path, models, capsys):
    path, data = served()
    unpinned = entry("lora", data, url=file_server.url(path), sha256=None, size=None, required=False,
                     todo="not trained yet", folder="loras")
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", data, url=file_server.url(path)), unpinned)
    before = len(file_server.requests)

    assert run(manifest, models, "--verify", "--only", "base,lora") == fetch_models.EXIT_NOT_VERIFIED
    err = capsys.readouterr().err
    assert "checkpoints/base.safetensors: missing" in err and "loras/lora.safetensors: missing" in err
    assert "sha256/size TODO" in err and "lora" in err

    (models / "loras").mkdir(parents=True)
    (models / "loras" / "lora.safetensors").write_bytes(data)
    assert run(manifest, models, "--verify", "--only", "lora") == fetch_models.EXIT_OK
    assert "UNPINNED" in capsys.readouterr().err
    assert len(file_server.requests) == before, "--verify must not touch the network"


def test_only_selects_by_keyword_name_group_and_file_name(tmp_path):
    a, b = entry("sdxl", b"a"), entry("sk_fine", b"b", group="annotator_lineart", folder="annotators", required=False)
    c = entry("sk_coarse", b"c", group="annotator_lineart", folder="annotators", required=False)
    d = entry("lora", b"d", sha256=None, size=None, todo="later", required=False, folder="loras")
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", a, b, c, d))

    def names(only):
        return [m.name for m in fetch_models.select(manifest, only)]

    assert names("required") == ["sdxl"]
    assert names("all") == ["sdxl", "sk_fine", "sk_coarse"], "all = every pinned entry"
    assert names("annotator_lineart") == ["sk_fine", "sk_coarse"]
    assert names("sk_coarse.safetensors,sdxl,sdxl") == ["sk_coarse", "sdxl"]
    assert names("lora") == ["lora"]
    with pytest.raises(ManifestError, match="nope"):
        fetch_models.select(manifest, "nope")


def test_unknown_name_and_broken_manifest_exit_2(tmp_path, models, capsys):
    manifest = write_manifest(tmp_path / "m.yaml", entry("base", b"x"))
    assert run(manifest, models, "--only", "nope") == fetch_models.EXIT_USAGE
    broken = write_manifest(tmp_path / "b.yaml", entry("base", b"x", folder="nope"))
    assert run(broken, models) == fetch_models.EXIT_USAGE
    assert "folder" in capsys.readouterr().err


# Hugging Face entries: the CLI in a subprocess, because huggingface_hub reads HF_ENDPOINT and
# HF_HUB_OFFLINE when it is imported (and the test session runs with HF_HUB_OFFLINE=1).

HF_REVISION = "0123456789abcdef0123456789abcdef01234567"


def run_cli(manifest, target, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fetch_models.py"), "--manifest", str(manifest), "--target",
         str(target)],
        env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", **env},
        capture_output=True, text=True, timeout=120,
    )


def test_hf_entry_downloads_through_hf_endpoint_renamed_into_its_folder(file_server, tmp_path, models):
    data = os.urandom(150_000)
    file_server.files[f"/org/cn/resolve/{HF_REVISION}/diffusion_pytorch_model.safetensors"] = data
    hf = {"repo": "org/cn", "file": "diffusion_pytorch_model.safetensors", "revision": HF_REVISION}
    good = entry("cn", data, hf=hf, folder="controlnet")
    bad = entry("cn_bad", data, hf=hf, folder="controlnet", sha256="f" * 64)
    env = {"HF_ENDPOINT": file_server.base_url, "HF_HUB_OFFLINE": "0"}

    done = run_cli(write_manifest(tmp_path / "good.yaml", good), models, env)
    assert done.returncode == fetch_models.EXIT_OK, done.stderr
    assert (models / "controlnet" / "cn.safetensors").read_bytes() == data
    assert not (models / ".fetch_models" / "hf" / "cn").exists(), "staging is cleaned up"

    failed = run_cli(write_manifest(tmp_path / "bad.yaml", bad), models, env)
    assert failed.returncode == fetch_models.EXIT_FAILED
    assert "sha256 mismatch" in failed.stderr and "deleted" in failed.stderr
    assert not (models / "controlnet" / "cn_bad.safetensors").exists()
    assert not list((models / ".fetch_models" / "hf" / "cn_bad").glob("*.safetensors"))


def test_hf_offline_fails_clearly_naming_the_file_and_the_command(tmp_path, models):
    hf = {"repo": "org/cn", "file": "weights.safetensors", "revision": HF_REVISION}
    manifest = write_manifest(tmp_path / "m.yaml", entry("cn", b"x", hf=hf, folder="controlnet"))

    done = run_cli(manifest, models, {"HF_HUB_OFFLINE": "1"})
    assert done.returncode == fetch_models.EXIT_FAILED
    assert "controlnet/cn.safetensors" in done.stderr and "org/cn/weights.safetensors" in done.stderr
    assert "HF_HUB_OFFLINE=0 python scripts/fetch_models.py --only cn" in done.stderr
