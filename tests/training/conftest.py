"""One prepared dataset (from generated images) shared by the training tests."""

from __future__ import annotations

import json

import pytest

from tests.training.images import write_raw_folder
from training.prepare_dataset import main as prepare_main


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> dict:
    """``python -m training.prepare_dataset`` at 256 px on tests/training/images.py's raw folder."""
    root = tmp_path_factory.mktemp("prepared")
    csv = write_raw_folder(root / "raw")
    code = prepare_main([str(root / "raw"), str(root / "out"), "--trigger", "ethmumbai_style", "--captions", str(csv),
                         "--size", "256", "--min-size", "256", "--val-fraction", "0.2"])
    return {"code": code, "out": root / "out", "report": json.loads((root / "out" / "report.json").read_text())}


@pytest.fixture(scope="session")
def encoding_cache(tmp_path_factory):
    """One latent/text-embedding cache for every training run of the session, as on a user's machine."""
    return tmp_path_factory.mktemp("encoding_cache")
