"""Dataset preparation: crops with the pack's face detector, buckets, captions, dedupe, split, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from skimage import data

from avatar_driver.paths import REPO_ROOT
from custom_nodes.ethmumbai.core.face import Face
from training import captions, imaging
from training.prepare_dataset import MIN_IMAGES, Settings, crop_region, main, split_names


def test_report_says_what_was_dropped_and_why(prepared):
    out, report = prepared["out"], prepared["report"]
    assert prepared["code"] == 0
    dropped = {d["source"]: d["reason"] for d in report["dropped"]}
    assert dropped == {"astronaut_exif.jpg": "duplicate", "small.png": "too_small", "broken.jpg": "unreadable",
                       "clip.gif": "unsupported_format"}
    duplicate = next(d for d in report["dropped"] if d["reason"] == "duplicate")
    assert "astronaut.png" in duplicate["detail"]  # only true once the EXIF rotation was applied
    assert report["unused_captions"] == ["missing.png"]
    summary = (out / "report.txt").read_text()
    assert "Kept 5 images (train 4, val 1); dropped 4." in summary and "small.png" in summary


def test_faces_are_cropped_by_the_pack_detector_and_the_rest_by_detail(prepared):
    out, report = prepared["out"], prepared["report"]
    crops = {k["source"]: k["crop"] for k in report["kept"]}
    assert crops == {"astronaut.png": "face", "astronaut_mirror.jpg": "face", "astronaut_warm.png": "face",
                     "cat.png": "subject", "coffee.png": "subject"}
    # Aspect buckets by default: the 451x300 cat and the 600x400 coffee stay landscape.
    sizes = {k["source"]: tuple(k["size"]) for k in report["kept"]}
    assert sizes == {"astronaut.png": (256, 256), "astronaut_mirror.jpg": (256, 256), "astronaut_warm.png": (256, 256),
                     "cat.png": (320, 192), "coffee.png": (320, 192)}
    for kept in report["kept"]:
        with Image.open(out / kept["output"]) as image:
            assert image.size == sizes[kept["source"]] and image.mode == "RGB"
            assert not image.info  # no metadata written
    assert report["warnings"] == []  # every source was large enough for its bucket


def test_captions_start_with_the_trigger_and_split_is_on_disk(prepared):
    out, report = prepared["out"], prepared["report"]
    texts = {k["source"]: (out / k["output"]).with_suffix(".txt").read_text().strip() for k in report["kept"]}
    assert texts["astronaut.png"] == "ethmumbai_style, woman in an orange space suit"
    assert texts["cat.png"] == "ethmumbai_style, a tabby cat"  # trigger already first: not doubled
    assert texts["coffee.png"] == "ethmumbai_style"  # the template
    assert len(list((out / "train").glob("*.png"))) == 4 and len(list((out / "val").glob("*.png"))) == 1
    assert len(report["dataset_sha256"]) == 64


def test_refuses_to_mix_into_a_used_folder(prepared, tmp_path, capsys):
    before = sorted(p.name for p in prepared["out"].rglob("*"))
    assert main([str(tmp_path), str(prepared["out"]), "--trigger", "x"]) == 2
    assert "is not empty; choose a new folder" in capsys.readouterr().err
    assert sorted(p.name for p in prepared["out"].rglob("*")) == before


def test_face_crop_region_stays_inside_the_frame_and_holds_the_face():
    pixels = np.zeros((600, 1000, 3), np.uint8)
    face = Face(x=900.0, y=20.0, w=80.0, h=80.0, score=0.9)  # near the top-right corner
    x, y, w, h = crop_region(pixels, face, 512, 512, Settings(trigger="t", size=512, use_buckets=False))
    assert (w, h) == (512, 512)
    assert 0 <= x and x + w <= 1000 and 0 <= y and y + h <= 600
    assert x <= face.x and face.x + face.w <= x + w and y <= face.y


def test_bucket_crop_keeps_the_composition_around_the_face():
    pixels = np.zeros((600, 1200, 3), np.uint8)
    face = Face(x=1000.0, y=250.0, w=100.0, h=100.0, score=0.9)
    settings = Settings(trigger="t", size=512, use_buckets=True)
    out_w, out_h = imaging.nearest_bucket(1200, 600, imaging.buckets(512))
    x, y, w, h = crop_region(pixels, face, out_w, out_h, settings)
    assert abs(w / h - out_w / out_h) < 0.02 and (w == 1200 or h == 600)  # the largest one of that shape
    assert 0 <= x and x + w <= 1200 and x <= face.x and face.x + face.w <= x + w


def test_buckets_are_multiples_of_64_within_the_area_and_match_the_aspect():
    choices = imaging.buckets(1024)
    assert (1024, 1024) in choices and (832, 1216) in choices and (1216, 832) in choices
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in choices)
    for size in (256, 512, 768, 1024):  # the 1:2..2:1 bound, which once let 512x2048 through
        assert all(max(w, h) <= 2 * min(w, h) for w, h in imaging.buckets(size))
    assert (512, 2048) not in choices and (704, 1408) in choices
    assert imaging.nearest_bucket(4000, 1000, choices) == (1408, 704)  # a panorama gets the widest allowed
    assert imaging.nearest_bucket(3000, 2000, choices) == (1216, 832)
    assert imaging.nearest_bucket(500, 500, choices) == (1024, 1024)


def test_perceptual_hash_matches_resampled_copies_and_separates_other_images():
    astronaut = data.astronaut()
    smaller = np.asarray(Image.fromarray(astronaut).resize((300, 300)))
    assert imaging.hamming(imaging.phash(astronaut), imaging.phash(smaller)) <= 6
    assert imaging.hamming(imaging.phash(astronaut), imaging.phash(data.chelsea())) > 6


def test_split_keeps_one_of_each_and_is_seeded():
    assert split_names(2, 0.1, 0).count("val") == 1
    assert split_names(10, 0.2, 3) == split_names(10, 0.2, 3)
    assert split_names(5, 0.0, 0) == ["train"] * 5


def test_trigger_word_goes_first_once():
    assert captions.with_trigger("a  cat", "tok") == "tok, a cat"
    assert captions.with_trigger("tok, a cat", "tok") == "tok, a cat"
    assert captions.with_trigger("", "tok") == "tok"


def write_images(folder, images: dict) -> None:
    folder.mkdir(parents=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)


def test_cli_warns_about_upscaled_images_and_prints_no_protobuf_noise(tmp_path):
    """The real CLI in a fresh process (mediapipe imported there): a 300 px face enlarged to 512 is reported."""
    small_face = np.asarray(Image.fromarray(data.astronaut()).resize((300, 300)))
    write_images(tmp_path / "raw", {"face.png": small_face, "cat.png": data.chelsea(), "coffee.png": data.coffee(),
                                    "rocket.png": data.rocket(), "cells.png": data.immunohistochemistry()})
    result = subprocess.run([sys.executable, "-m", "training.prepare_dataset", str(tmp_path / "raw"),
                             str(tmp_path / "out"), "--trigger", "t", "--size", "512", "--min-size", "256"],
                            cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GetPrototype" not in result.stderr and "AttributeError" not in result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    kept = {k["source"]: k for k in report["kept"]}
    assert kept["face.png"]["crop"] == "face"  # mediapipe (or its fallback) ran in that process
    warned = {w["source"]: w["factor"] for w in report["warnings"] if w["reason"] == "upscaled"}
    # Each warning's factor is its output over its source region; the 512 px and larger sources are not warned.
    for source, factor in warned.items():
        (_, _, w, h), (out_w, out_h) = kept[source]["region"], kept[source]["size"]
        assert factor == round(max(out_w / w, out_h / h), 3) > 1.0
    assert warned["face.png"] == round(512 / 300, 3) and "cells.png" not in warned and "rocket.png" not in warned
    assert set(warned) == {"face.png", "cat.png", "coffee.png"}  # 300 and 400 px tall under a 384 px tall bucket
    assert "face.png: enlarged 1.71x (300x300 of 300x300 to 512x512)" in result.stdout
    assert "Warning: 5 images is few for a style" in result.stdout


def test_missing_captions_file_is_one_clear_line(tmp_path, capsys):
    write_images(tmp_path / "raw", {"cat.png": data.chelsea()})
    code = main([str(tmp_path / "raw"), str(tmp_path / "out"), "--trigger", "t", "--captions",
                 str(tmp_path / "captions.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: captions file {tmp_path / 'captions.csv'} does not exist " \
                                "(--captions takes a CSV with columns file,caption)\n"
    assert not (tmp_path / "out").exists()


def test_too_few_usable_images_says_how_many_and_why(tmp_path, capsys):
    images = {"cat.png": data.chelsea(), "coffee.png": data.coffee(), "rocket.png": data.rocket(),
              "tiny.png": data.astronaut()[:100, :100]}
    write_images(tmp_path / "raw", images)
    (tmp_path / "raw" / "broken.png").write_bytes(b"\x89PNG not really")
    code = main([str(tmp_path / "raw"), str(tmp_path / "out"), "--trigger", "t", "--size", "256", "--min-size", "256"])
    err = capsys.readouterr().err
    assert code == 2 and f"only 3 usable images in {tmp_path / 'raw'}; at least {MIN_IMAGES} are needed" in err
    assert "broken.png: unreadable" in err and "tiny.png: too_small" in err and "Traceback" not in err
