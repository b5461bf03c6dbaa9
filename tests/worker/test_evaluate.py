"""The quality harness against the real local API on tiny models: every output written, every metric present."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import pytest
from PIL import Image

from avatar_driver.paths import REPO_ROOT
from tests.worker.conftest import fast_params
from tools.images import astronaut, chelsea, encode
from workflows.evaluate import grid_cells, job_error, parse_value
from workflows.metrics import METRICS

FACES = {  # three photos of a face, in the three accepted formats
    "astronaut.png": encode(astronaut()),
    "mirrored.jpg": encode(astronaut()[:, ::-1].copy(), "JPEG", quality=90),
    "closer.webp": encode(cv2.resize(astronaut()[40:360, 80:400], (480, 480)), "WEBP", quality=90),
}


@pytest.fixture(scope="module")
def report_dir(worker_server, tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for name, data in {**FACES, "cat.png": encode(chelsea())}.items():
        (photos / name).write_bytes(data)
    out = tmp_path_factory.mktemp("report")
    sets = [f"--set={name}={value}" for name, value in fast_params().items()]
    run = subprocess.run(
        [sys.executable, "-m", "workflows.evaluate", str(photos), "--endpoint", worker_server.url, "--out", str(out),
         *sets, "--grid", "denoise=0.5,0.9", "--concurrency", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_every_output_is_written_with_every_metric(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert [c["params"]["denoise"] for c in report["cells"]] == [0.5, 0.9]
    faces = [r for r in report["renders"] if r["photo"] in FACES]
    assert len(faces) == len(FACES) * 2
    for render in faces:
        assert render["ok"], render
        assert all(render[m] is not None for m in METRICS), render
        assert 0.0 <= render["structure_ssim"] <= 1.0 and 0.0 <= render["silhouette_iou"] <= 1.0
        assert render["width"] == fast_params()["size"]
    for cell in report["summary"]:
        assert cell["ok"] == len(FACES) and cell["errors"] == {"NO_FACE_DETECTED": 1}
        assert all(cell["means"][m] is not None for m in METRICS)
        assert cell["face_found_share"] == cell["means"]["face_found"]

    with (report_dir / "report.csv").open() as rows:
        table = list(csv.DictReader(rows))
    assert len(table) == len(report["renders"]) and set(METRICS) <= set(table[0])

    sheet = Image.open(report_dir / "contact_sheet.png")
    assert sheet.width > 3 * 192 and sheet.height > 4 * 192  # photo column + 2 cells, 4 photo rows

    page = (report_dir / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page and "src=\"http" not in page


def test_a_failed_render_is_recorded_with_its_code_and_the_run_goes_on(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    cat = [r for r in report["renders"] if r["photo"] == "cat.png"]
    assert [r["error_code"] for r in cat] == ["NO_FACE_DETECTED"] * 2
    assert all(r[m] is None for r in cat for m in METRICS)


def test_the_report_says_the_numbers_mean_nothing_on_the_demo_models(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert report["demo"] is True and "tiny demo models" in report["note"]
    assert report["note"] in (report_dir / "report.html").read_text()


def test_grid_cells_are_the_product_of_styles_and_grid_values():
    cells = grid_cells({"steps": 2}, {"cfg": [4, 7]}, ["ethmumbai", "sketch"])
    assert [c.varied for c in cells] == [{"style": "ethmumbai", "cfg": 4}, {"style": "ethmumbai", "cfg": 7},
                                         {"style": "sketch", "cfg": 4}, {"style": "sketch", "cfg": 7}]
    assert all(c.params["steps"] == 2 for c in cells) and cells[1].label == "style=ethmumbai cfg=7"
    assert [c.label for c in grid_cells({}, {}, [])] == ["defaults"]
    assert (parse_value("4.5"), parse_value("solid"), parse_value("7")) == (4.5, "solid", 7)


def test_job_errors_keep_the_workers_code():
    failed = {"status": "FAILED", "error": json.dumps({"code": "NO_FACE_DETECTED", "message": "no face"})}
    assert job_error(failed) == ("NO_FACE_DETECTED", "no face")
    assert job_error({"status": "FAILED", "error": "Traceback ..."})[0] == "ENDPOINT_ERROR"
    assert job_error({"status": "TIMED_OUT"}) == ("JOB_NOT_COMPLETED", "TIMED_OUT")
