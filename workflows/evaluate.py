"""The quality harness: render a folder of photos through the worker API over a grid of settings and score them.

    python -m workflows.evaluate PHOTOS_DIR --endpoint URL --out DIR [--set k=v ...] [--grid k=v1,v2 ...]
                                 [--style NAME ...] [--concurrency N] [--timeout S]

``URL`` is the worker's local API (``http://127.0.0.1:8000``) or a RunPod endpoint
(``https://api.runpod.ai/v2/<endpoint id>``, key from ``RUNPOD_API_KEY``). Every photo is rendered for every grid
cell (the product of the ``--grid`` values and the ``--style`` names; ``--set`` values go to every job), and
``DIR`` gets ``report.json``, ``report.csv``, ``contact_sheet.png`` and a self-contained ``report.html``.
Values are JSON where they parse as JSON (``cfg=4.5``, ``seed=7``), else strings (``background=solid``).
The metrics and how to read them: workflows/ethmumbai_avatar/README.md ("Judging quality").
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import itertools
import json
import os
import statistics
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from avatar_driver.contract import FACE_CROP_CLASS, latest, load_workflows
from avatar_driver.errors import DEMO_MODELS
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from custom_nodes.ethmumbai.core.image_io import open_image
from workflows.metrics import METRICS, CropSettings, Reference, rgb_array

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
# Failures the worker cannot code itself: the endpoint did not answer, or answered something that is not a job.
ENDPOINT_ERROR = "ENDPOINT_ERROR"
JOB_NOT_COMPLETED = "JOB_NOT_COMPLETED"  # RunPod ended the job CANCELLED or TIMED_OUT (its status is the message)
DEMO_NOTE = ("The worker runs the tiny demo models: its images are random texture, so these numbers say nothing "
             "about avatar quality. They only show that every stage and metric runs.")
MAX_PHOTO_PIXELS = 40_000_000  # the workflow's load node limit; larger photos fail on the worker anyway
TILE = 192


# ---------------------------------------------------------------- the grid


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


@dataclass(frozen=True)
class Cell:
    index: int
    varied: dict  # what distinguishes this cell (grid values, style)
    params: dict  # the job input besides the image: --set values, then the cell's own

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.varied.items()) or "defaults"


def grid_cells(sets: dict, grids: dict[str, list], styles: list[str]) -> list[Cell]:
    """Every combination of the grid's values (and styles), each with the fixed ``sets`` underneath."""
    axes = ({"style": styles} if styles else {}) | grids
    cells = []
    for index, values in enumerate(itertools.product(*axes.values())):
        varied = dict(zip(axes, values, strict=True))
        cells.append(Cell(index, varied, {**sets, **varied}))
    return cells


# ---------------------------------------------------------------- talking to the worker


@dataclass
class Endpoint:
    url: str
    api_key: str | None = None
    timeout: float = 600.0
    poll_s: float = 1.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.url = self.url.rstrip("/")
        if self.api_key:
            self.session.headers["Authorization"] = f"Bearer {self.api_key}"

    def run(self, job_input: dict) -> dict:
        """The job's final status body (``status`` plus ``output`` or ``error``); raises requests errors."""
        deadline = time.monotonic() + self.timeout
        body = self._json(self.session.post(f"{self.url}/runsync", json={"input": job_input}, timeout=self.timeout))
        # A RunPod endpoint answers /runsync IN_QUEUE/IN_PROGRESS after its own wait: poll the job's status.
        while body.get("status") not in TERMINAL:
            if time.monotonic() > deadline:
                raise requests.Timeout(f"job {body.get('id')} not finished within {self.timeout} s")
            time.sleep(self.poll_s)
            body = self._json(self.session.get(f"{self.url}/status/{body['id']}", timeout=60))
        return body

    @staticmethod
    def _json(response: requests.Response) -> dict:
        response.raise_for_status()
        return response.json()


def job_error(body: dict) -> tuple[str, str]:
    """(code, message) of a job that did not complete."""
    if body.get("status") != "FAILED":
        return JOB_NOT_COMPLETED, str(body.get("status"))
    try:
        error = json.loads(body.get("error") or "")
        return str(error["code"]), str(error["message"])
    except (ValueError, TypeError, KeyError):
        return ENDPOINT_ERROR, str(body.get("error"))[:300]


# ---------------------------------------------------------------- one render


@dataclass
class Photo:
    name: str
    data: bytes
    pixels: np.ndarray | None  # None: the harness cannot decode it (the worker will say why)


@dataclass
class Render:
    photo: str
    cell: int
    params: dict
    ok: bool = False
    error_code: str | None = None
    error_message: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the request, queueing included
    worker_seconds: float | None = None  # the worker's own total
    width: int | None = None
    height: int | None = None
    metrics: dict = field(default_factory=lambda: dict.fromkeys(METRICS))
    avatar: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict:
        return {"photo": self.photo, "cell": self.cell, "params": self.params, "ok": self.ok,
                "error_code": self.error_code, "error_message": self.error_message, "warnings": self.warnings,
                "seconds": round(self.seconds, 3), "worker_seconds": self.worker_seconds, "width": self.width,
                "height": self.height, **self.metrics}


class References:
    """Each photo's metric reference per avatar size, computed once even when renders finish together."""

    def __init__(self, settings: CropSettings):
        self.settings = settings
        self._cache: dict[tuple[str, int], Reference] = {}
        self._lock = threading.Lock()

    def get(self, photo: Photo, size: int) -> Reference:
        with self._lock:  # the detectors serialise anyway; one lock keeps each reference computed once
            key = (photo.name, size)
            if key not in self._cache:
                self._cache[key] = Reference(photo.pixels, size, self.settings)
            return self._cache[key]


def render_one(endpoint: Endpoint, photo: Photo, cell: Cell, references: References) -> Render:
    """One job and its scores; any failure is recorded on the render, never raised."""
    render = Render(photo.name, cell.index, cell.params)
    started = time.monotonic()
    try:
        body = endpoint.run({"image": base64.b64encode(photo.data).decode("ascii"), **cell.params})
    except (requests.RequestException, ValueError) as err:
        render.error_code, render.error_message = ENDPOINT_ERROR, f"{type(err).__name__}: {err}"[:300]
        return render
    finally:
        render.seconds = time.monotonic() - started
    if body.get("status") != "COMPLETED":
        render.error_code, render.error_message = job_error(body)
        return render
    output = body.get("output") or {}
    render.warnings = [w["code"] for w in output.get("warnings", [])]
    render.worker_seconds = (output.get("timings") or {}).get("total")
    try:
        data = (base64.b64decode(output["image"]) if "image" in output
                else endpoint.session.get(output["url"], timeout=60).content)
        render.avatar = rgb_array(Image.open(io.BytesIO(data)))
    except (KeyError, OSError, requests.RequestException) as err:
        render.error_code, render.error_message = ENDPOINT_ERROR, f"no readable image in the output: {err}"[:300]
        return render
    render.height, render.width = render.avatar.shape[:2]
    render.ok = True
    if photo.pixels is not None:
        render.metrics = references.get(photo, render.width).score(render.avatar)
    return render


# ---------------------------------------------------------------- the report


def summarise(cells: list[Cell], renders: list[Render]) -> list[dict]:
    """Per cell: counts, the share of renders with a face found, and the mean of every metric."""
    summary = []
    for cell in cells:
        ok = [r for r in renders if r.cell == cell.index and r.ok]
        means = {}
        for metric in METRICS:
            values = [float(r.metrics[metric]) for r in ok if r.metrics[metric] is not None]
            means[metric] = round(statistics.fmean(values), 4) if values else None
        errors = [r.error_code for r in renders if r.cell == cell.index and not r.ok]
        seconds = [r.seconds for r in ok]
        summary.append({
            "cell": cell.index, "label": cell.label, "params": cell.params, "renders": len(ok) + len(errors),
            "ok": len(ok), "errors": {code: errors.count(code) for code in sorted(set(errors))},
            "face_found_share": means["face_found"], "means": means,
            "mean_seconds": round(statistics.fmean(seconds), 3) if seconds else None,
        })
    return summary


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _tile(pixels: np.ndarray | None, lines: list[str], font, colour=(40, 40, 40)) -> Image.Image:
    line_h = 14
    tile = Image.new("RGB", (TILE, TILE + line_h * len(lines) + 4), "white")
    if pixels is not None:
        tile.paste(Image.fromarray(pixels).resize((TILE, TILE)), (0, 0))
    else:
        ImageDraw.Draw(tile).rectangle((0, 0, TILE - 1, TILE - 1), fill=(220, 220, 220))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(lines):
        draw.text((4, TILE + 2 + i * line_h), line, fill=colour, font=font)
    return tile


def contact_sheet(photos: list[Photo], cells: list[Cell], renders: list[Render], references: References,
                  note: str | None) -> Image.Image:
    """Rows photos, columns: the photo's crop, then one per grid cell; metrics under each image."""
    font = ImageFont.load_default(size=11)
    by_key = {(r.photo, r.cell): r for r in renders}
    gap, columns = 6, 1 + len(cells)
    note_lines = textwrap.wrap(note, width=max(40, columns * (TILE + gap) // 6)) if note else []
    header_h = 44 + 14 * len(note_lines)
    rows = []
    for photo in photos:
        sizes = [r.width for r in renders if r.photo == photo.name and r.ok]
        crop = references.get(photo, sizes[0]).crop if sizes and photo.pixels is not None else photo.pixels
        row = [_tile(crop, [photo.name[:28], "input crop"], font)]
        for cell in cells:
            r = by_key[(photo.name, cell.index)]
            if r.ok:
                m = r.metrics
                lines = [f"face {_fmt(m['face_found'])}  iou {_fmt(m['face_iou'])}",
                         f"struct {_fmt(m['structure_ssim'])}  id {_fmt(m['identity'])}",
                         f"silhouette {_fmt(m['silhouette_iou'])}  {r.seconds:.1f}s"]
                row.append(_tile(r.avatar, lines, font))
            else:
                row.append(_tile(None, [r.error_code or "?", (r.error_message or "")[:30]], font, (170, 20, 20)))
        rows.append(row)
    tile_h = max(t.height for row in rows for t in row)
    sheet = Image.new("RGB", (columns * (TILE + gap) + gap, header_h + len(rows) * (tile_h + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(note_lines):
        draw.text((gap, 4 + 14 * i), line, fill=(170, 20, 20), font=font)
    for column, label in enumerate(["photo"] + [c.label for c in cells]):
        x = gap + column * (TILE + gap)
        for i in range(0, min(len(label), 90), 30):  # wrap the label over up to three lines
            draw.text((x, header_h - 42 + (i // 30) * 13), label[i:i + 30], fill="black", font=font)
    for r, row in enumerate(rows):
        for column, tile in enumerate(row):
            sheet.paste(tile, (gap + column * (TILE + gap), header_h + r * (tile_h + gap)))
    return sheet


def write_csv(path: Path, renders: list[Render]) -> None:
    param_names = sorted({name for r in renders for name in r.params})
    columns = ["photo", "cell", *param_names, "ok", "error_code", "error_message", "warnings", "seconds",
               "worker_seconds", "width", "height", *METRICS]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for r in renders:
            row = r.row()
            params = row.pop("params")
            row["warnings"] = " ".join(row["warnings"])
            writer.writerow({**row, **{name: params.get(name, "") for name in param_names}})


def write_html(path: Path, report: dict, sheet_png: bytes) -> None:
    esc = html.escape

    def table(headers: list[str], rows: list[list]) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    summary = table(
        ["cell", "settings", "renders", "ok", "errors", "face found", *METRICS[1:], "mean s"],
        [[s["cell"], s["label"], s["renders"], s["ok"], ", ".join(f"{k}×{v}" for k, v in s["errors"].items()),
          s["face_found_share"], *(s["means"][m] for m in METRICS[1:]), s["mean_seconds"]]
         for s in report["summary"]])
    renders = table(
        ["photo", "cell", "ok", "error", "warnings", "s", *METRICS],
        [[r["photo"], r["cell"], r["ok"], r["error_code"], " ".join(r["warnings"]), r["seconds"],
          *(r[m] for m in METRICS)] for r in report["renders"]])
    note = f'<p class="note">{esc(report["note"])}</p>' if report["note"] else ""
    image = base64.b64encode(sheet_png).decode("ascii")
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Avatar quality report</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px}}table{{border-collapse:collapse;margin:12px 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:nth-child(2),th{{text-align:left}}
.note{{background:#fee;border:1px solid #c33;padding:8px}}img{{max-width:100%}}</style></head><body>
<h1>Avatar quality report</h1>{note}
<p>Endpoint {esc(report["endpoint"])} · {len(report["photos"])} photos × {len(report["cells"])} cells ·
started {esc(report["started"])}. Metrics: workflows/ethmumbai_avatar/README.md, "Judging quality".</p>
<h2>Per cell</h2>{summary}<h2>Contact sheet</h2><img alt="contact sheet" src="data:image/png;base64,{image}">
<h2>Per render</h2>{renders}</body></html>
""")


# ---------------------------------------------------------------- the run


def load_photos(folder: Path) -> list[Photo]:
    photos = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
        data = path.read_bytes()
        try:
            pixels = rgb_array(open_image(data, MAX_PHOTO_PIXELS))
        except EthMumbaiError:
            pixels = None
        photos.append(Photo(path.name, data, pixels))
    if not photos:
        raise SystemExit(f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in {folder}")
    return photos


def evaluate(photos: list[Photo], cells: list[Cell], endpoint: Endpoint, out: Path, concurrency: int = 1,
             settings: CropSettings | None = None, progress: bool = True) -> dict:
    """Render and score every photo × cell, write the four outputs into ``out``, return the report."""
    if settings is None:
        graph = latest(load_workflows()).graph
        settings = CropSettings.from_node(next(n["inputs"] for n in graph.values()
                                               if n["class_type"] == FACE_CROP_CLASS))
    references = References(settings)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    work = [(photo, cell) for photo in photos for cell in cells]
    with ThreadPoolExecutor(max_workers=concurrency) as pool, \
            tqdm(total=len(work), unit="render", file=sys.stderr, disable=not progress) as bar:
        futures = [pool.submit(render_one, endpoint, photo, cell, references) for photo, cell in work]
        renders = []
        for future in futures:
            renders.append(future.result())
            bar.update(1)
    demo = any(DEMO_MODELS in r.warnings for r in renders)
    note = DEMO_NOTE if demo else None
    report = {
        "endpoint": endpoint.url, "started": started, "demo": demo, "note": note,
        "photos": [p.name for p in photos],
        "cells": [{"cell": c.index, "label": c.label, "params": c.params} for c in cells],
        "summary": summarise(cells, renders),
        "renders": [r.row() for r in renders],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_csv(out / "report.csv", renders)
    sheet = io.BytesIO()
    contact_sheet(photos, cells, renders, references, note).save(sheet, "PNG")
    (out / "contact_sheet.png").write_bytes(sheet.getvalue())
    write_html(out / "report.html", report, sheet.getvalue())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflows.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder of photos (png, jpg, webp)")
    parser.add_argument("--endpoint", required=True, help="worker API base URL (local API or RunPod endpoint)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report")
    parser.add_argument("--set", dest="sets", action="append", type=parse_assignment, default=[],
                        metavar="NAME=VALUE", help="a job input for every render")
    parser.add_argument("--grid", action="append", type=parse_assignment, default=[], metavar="NAME=V1,V2",
                        help="an axis of the grid: one cell per value")
    parser.add_argument("--style", dest="styles", action="append", default=[], metavar="NAME",
                        help="a style preset as a grid axis (repeat for several)")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs in flight at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per job")
    args = parser.parse_args(argv)
    sets = {name: parse_value(value) for name, value in args.sets}
    grids = {name: [parse_value(v) for v in values.split(",")] for name, values in args.grid}
    cells = grid_cells(sets, grids, args.styles)
    endpoint = Endpoint(args.endpoint, os.environ.get("RUNPOD_API_KEY"), args.timeout)
    report = evaluate(load_photos(args.photos), cells, endpoint, args.out, max(1, args.concurrency))
    if report["note"]:
        print(f"NOTE: {report['note']}", file=sys.stderr)
    for cell in report["summary"]:
        means = "  ".join(f"{k} {_fmt(v)}" for k, v in cell["means"].items())
        print(f"cell {cell['cell']} [{cell['label']}] ok {cell['ok']}/{cell['renders']}  {means}")
    print(f"wrote {args.out}/report.json, report.csv, contact_sheet.png, report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
