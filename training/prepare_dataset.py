"""Turn a folder of raw style images into a training set, with a report of what was dropped and why.

    python -m training.prepare_dataset RAW_DIR OUT_DIR --trigger ethmumbai_style [--captions captions.csv]
        [--size 1024] [--square] [--val-fraction 0.1]

Each image is EXIF-rotated and made RGB, deduplicated by perceptual hash, cropped to the nearest
aspect bucket (sides in steps of 64, area at most ``size``², between 1:2 and 2:1) centred on the
largest face found by the node pack's own detector (the same one the avatar workflow uses), or on
the detail when there is no face (``--square``: ``size``² head-and-shoulders crops instead),
captioned with the trigger word first, and put in ``train/`` or ``val/``. Images that had to be
enlarged are listed in the report with their factor.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from custom_nodes.ethmumbai.core import crop, face
from training import captions, imaging
from training.dataset import InputError, dataset_hash

IGNORED_SUFFIXES = frozenset({".txt", ".csv", ".json", ".md"})
# Fewer usable images than this is an error: a style needs variety (20-40 recommended), and one goes to val/.
MIN_IMAGES = 5
RECOMMENDED_IMAGES = 20
# mediapipe 0.10.21 under protobuf 5+ prints this (harmless: detection works) while its bindings load.
PROTOBUF_NOISE = "'MessageFactory' object has no attribute 'GetPrototype'"


@dataclass(frozen=True)
class Settings:
    trigger: str
    size: int = 1024
    use_buckets: bool = True
    template: str = captions.DEFAULT_TEMPLATE
    margin: float = 0.6  # as the avatar workflow's face crop: head and some shoulders
    detector: str = "auto"
    min_confidence: float = 0.5
    min_size: int = 512
    dedupe_distance: int = 6
    val_fraction: float = 0.1
    require_face: bool = False
    seed: int = 0


@dataclass
class Source:
    path: Path
    relative: Path
    width: int = 0
    height: int = 0
    hash: int = 0


@dataclass
class Report:
    settings: dict
    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    unused_captions: list[str] = field(default_factory=list)

    def drop(self, source: Source, reason: str, detail: str) -> None:
        self.dropped.append({"source": source.relative.as_posix(), "reason": reason, "detail": detail})

    def warn(self, source: Source, reason: str, detail: str, **extra) -> None:
        self.warnings.append({"source": source.relative.as_posix(), "reason": reason, "detail": detail} | extra)


def find_sources(raw_dir: Path, report: Report) -> list[Source]:
    """Image files under ``raw_dir`` (recursive, name order); other files are reported, captions ignored."""
    sources = []
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        source = Source(path, path.relative_to(raw_dir))
        if path.suffix.lower() in imaging.IMAGE_SUFFIXES:
            sources.append(source)
        elif path.suffix.lower() not in IGNORED_SUFFIXES:
            report.drop(source, "unsupported_format", f"{path.suffix or 'no extension'} is not one of "
                        f"{', '.join(sorted(imaging.IMAGE_SUFFIXES))}")
    return sources


def measure(sources: list[Source], settings: Settings, report: Report) -> list[Source]:
    """Load each image once for its size and hash; drop the unreadable and the too small."""
    readable = []
    for source in sources:
        try:
            pixels = imaging.load_rgb(source.path)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            report.drop(source, "unreadable", f"{type(exc).__name__}: {exc}")
            continue
        source.height, source.width = pixels.shape[:2]
        if min(source.width, source.height) < settings.min_size:
            report.drop(source, "too_small", f"{source.width}x{source.height}, short side under {settings.min_size}")
            continue
        source.hash = imaging.phash(pixels)
        readable.append(source)
    return readable


def dedupe(sources: list[Source], max_distance: int, report: Report) -> list[Source]:
    """Keep one image of each near-duplicate group: the one with most pixels (then the first by name)."""
    kept: list[Source] = []
    for source in sorted(sources, key=lambda s: -s.width * s.height):
        twin = next((k for k in kept if imaging.hamming(k.hash, source.hash) <= max_distance), None)
        if twin is None:
            kept.append(source)
        else:
            report.drop(source, "duplicate", f"of {twin.relative.as_posix()} "
                        f"(perceptual hash distance {imaging.hamming(twin.hash, source.hash)})")
    return sorted(kept, key=lambda s: s.relative)


def target_size(width: int, height: int, settings: Settings) -> tuple[int, int]:
    if settings.use_buckets:
        return imaging.nearest_bucket(width, height, imaging.buckets(settings.size))
    return settings.size, settings.size


def crop_region(pixels: np.ndarray, found: face.Face | None, out_w: int, out_h: int,
                settings: Settings) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the source region to resize: inside the frame, centred on the face or the detail."""
    height, width = pixels.shape[:2]
    if found is not None:
        cx, cy = found.x + found.w / 2.0, found.y + found.h / 2.0
    else:
        cx, cy = imaging.subject_centre(pixels)
    rect_w, rect_h = imaging.largest_rect(width, height, out_w / out_h)
    if found is not None and not settings.use_buckets:
        # The workflow's head-and-shoulders framing, but never smaller than the output (no upscaling
        # unless the image itself is small) and never past the border (no padded edges to learn).
        # Buckets keep the whole composition instead, centred on the face.
        box = crop.box_around(found.x, found.y, found.w, found.h, settings.margin, width, height, out_w)
        rect_w = rect_h = min(rect_w, max(box.size, out_w))
    x, y = imaging.place(width, height, rect_w, rect_h, cx, cy)
    return x, y, rect_w, rect_h


def detect(pixels: np.ndarray, settings: Settings) -> face.Face | None:
    if settings.detector in ("auto", "mediapipe"):
        import_quietly("mediapipe")
    faces = face.detect_faces(pixels, settings.detector, settings.min_confidence)
    return face.rank_faces(faces, "prominent", pixels.shape[1], pixels.shape[0])[0] if faces else None


def import_quietly(module: str) -> None:
    """Import ``module`` (if installed) with its import-time protobuf noise dropped from stderr; other
    output passes through. A missing module is left for the face detector to report (or fall back)."""
    if module in sys.modules:
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            __import__(module)
    except ImportError:
        pass
    finally:
        noise = captured.getvalue().replace(f"AttributeError: {PROTOBUF_NOISE}\n", "")
        sys.stderr.write(noise)


def upscale_factor(region: tuple[int, int, int, int], out_w: int, out_h: int) -> float:
    """How much the crop region is enlarged to fill the output (1.0 or less: not enlarged)."""
    return max(out_w / region[2], out_h / region[3])


def split_names(count: int, fraction: float, seed: int) -> list[str]:
    """A seeded train/val assignment; at least one of each when there are two or more images."""
    n_val = round(count * fraction)
    if fraction > 0 and count >= 2:
        n_val = min(max(n_val, 1), count - 1)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return ["val" if index in val else "train" for index in range(count)]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:48] or "image"


def prepare(raw_dir: Path, out_dir: Path, settings: Settings, captions_csv: Path | None = None) -> Report:
    """Write ``out_dir/{train,val}/NNNN_name.{png,txt}``, ``report.json`` and ``report.txt``."""
    if not raw_dir.is_dir():
        raise InputError(f"raw image folder {raw_dir} does not exist")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir} is not empty; choose a new folder (prepared sets are never mixed)")
    if captions_csv is not None and not captions_csv.is_file():
        raise InputError(f"captions file {captions_csv} does not exist (--captions takes a CSV with columns "
                         "file,caption)")
    report = Report(settings=asdict(settings) | {"raw_dir": str(raw_dir), "captions_csv": str(captions_csv or "")})
    table = captions.read_csv(captions_csv) if captions_csv else {}
    sources = dedupe(measure(find_sources(raw_dir, report), settings, report), settings.dedupe_distance, report)
    if len(sources) < MIN_IMAGES:
        dropped = "".join(f"\n  {d['source']}: {d['reason']} ({d['detail']})" for d in report.dropped)
        raise InputError(f"only {len(sources)} usable images in {raw_dir}; at least {MIN_IMAGES} are needed "
                         f"({RECOMMENDED_IMAGES}-40 recommended)" + (f". Dropped:{dropped}" if dropped else ""))

    prepared = []
    for source in sources:
        pixels = imaging.load_rgb(source.path)
        found = detect(pixels, settings)
        if found is None and settings.require_face:
            report.drop(source, "no_face", f"no face found by detector {settings.detector!r} and --require-face is set")
            continue
        out_w, out_h = target_size(source.width, source.height, settings)
        x, y, w, h = crop_region(pixels, found, out_w, out_h, settings)
        factor = upscale_factor((x, y, w, h), out_w, out_h)
        if factor > 1.0:
            report.warn(source, "upscaled", f"enlarged {factor:.2f}x ({w}x{h} of {source.width}x{source.height} "
                        f"to {out_w}x{out_h}): may look soft; a larger original is better", factor=round(factor, 3))
        resized = crop.resize(np.ascontiguousarray(pixels[y:y + h, x:x + w]), out_w, out_h)
        text, origin = captions.caption_for(source.path, source.relative, settings.trigger, table, settings.template)
        prepared.append((source, resized, text, {"crop": "face" if found else "subject", "region": [x, y, w, h],
                                                 "size": [out_w, out_h], "caption_from": origin}))

    splits = split_names(len(prepared), settings.val_fraction, settings.seed)
    for index, ((source, resized, text, info), split) in enumerate(zip(prepared, splits, strict=True), start=1):
        name = f"{index:04d}_{slug(source.relative.stem)}"
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(resized).save(out_dir / split / f"{name}.png")  # PIL writes no metadata unless asked
        (out_dir / split / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
        report.kept.append({"source": source.relative.as_posix(), "output": f"{split}/{name}.png", "split": split,
                            "caption": text} | info)
    matched = {key for s, *_ in prepared for key in (s.relative.as_posix(), s.relative.name, s.relative.stem)}
    report.unused_captions = sorted(set(table) - matched)
    write_report(out_dir, report)
    return report


def counts(report: Report) -> dict:
    kept = report.kept
    return {
        "kept": len(kept),
        "train": sum(k["split"] == "train" for k in kept),
        "val": sum(k["split"] == "val" for k in kept),
        "dropped": len(report.dropped),
        "dropped_by_reason": dict(Counter(d["reason"] for d in report.dropped)),
        "warnings": len(report.warnings),
        "crops": dict(Counter(k["crop"] for k in kept)),
        "caption_sources": dict(Counter(k["caption_from"] for k in kept)),
        "sizes": dict(Counter("x".join(map(str, k["size"])) for k in kept)),
    }


def summary(report: Report) -> str:
    """The human-readable report."""
    c = counts(report)
    lines = [f"Kept {c['kept']} images (train {c['train']}, val {c['val']}); dropped {c['dropped']}.",
             "Sizes: " + ", ".join(f"{size} x{n}" for size, n in sorted(c["sizes"].items())),
             "Crops: " + ", ".join(f"{kind} {n}" for kind, n in sorted(c["crops"].items())),
             "Captions from: " + ", ".join(f"{kind} {n}" for kind, n in sorted(c["caption_sources"].items()))]
    if c["kept"] < RECOMMENDED_IMAGES:
        lines.append(f"Warning: {c['kept']} images is few for a style; {RECOMMENDED_IMAGES}-40 are recommended.")
    for reason, n in sorted(c["dropped_by_reason"].items()):
        lines.append(f"Dropped as {reason} ({n}):")
        lines += [f"  {d['source']}: {d['detail']}" for d in report.dropped if d["reason"] == reason]
    for reason in sorted({w["reason"] for w in report.warnings}):
        warned = [w for w in report.warnings if w["reason"] == reason]
        lines.append(f"Warning, {reason} ({len(warned)}):")
        lines += [f"  {w['source']}: {w['detail']}" for w in warned]
    if report.unused_captions:
        lines.append("CSV captions matching no kept image: " + ", ".join(report.unused_captions))
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: Report) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    body = asdict(report) | {"counts": counts(report), "dataset_sha256": dataset_hash(out_dir)}
    (out_dir / "report.json").write_text(json.dumps(body, indent=2) + "\n")
    (out_dir / "report.txt").write_text(summary(report))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.prepare_dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--trigger", required=True, help="trigger word put first in every caption")
    parser.add_argument("--captions", type=Path, help="CSV with columns file,caption (file: path, name or stem)")
    parser.add_argument("--template", default=captions.DEFAULT_TEMPLATE,
                        help="caption for images without one; {trigger} and {name} are filled in (default: %(default)s)")
    parser.add_argument("--size", type=int, default=1024,
                        help="bucket resolution: area at most size² (with --square: the side) (default: %(default)s)")
    parser.add_argument("--square", dest="buckets", action="store_false",
                        help="size² head-and-shoulders crops instead of aspect buckets (sides in steps of 64, 1:2 to 2:1)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--margin", type=float, default=0.6, help="face box growth per side, as a fraction of the face")
    parser.add_argument("--detector", choices=face.DETECTORS, default="auto")
    parser.add_argument("--min-confidence", type=float, default=0.5)
    parser.add_argument("--min-size", type=int, default=512, help="drop images whose short side is smaller")
    parser.add_argument("--dedupe-distance", type=int, default=6,
                        help="perceptual-hash bits within which two images are duplicates (0: exact only)")
    parser.add_argument("--require-face", action="store_true", help="drop images without a detected face")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size % 64 or args.size < 256:
        parser.error("--size must be a multiple of 64, at least 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(trigger=args.trigger, size=args.size, use_buckets=args.buckets, template=args.template,
                        margin=args.margin, detector=args.detector, min_confidence=args.min_confidence,
                        min_size=args.min_size, dedupe_distance=args.dedupe_distance,
                        val_fraction=args.val_fraction, require_face=args.require_face, seed=args.seed)
    try:
        report = prepare(args.raw_dir, args.out_dir, settings, args.captions)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(summary(report))
    print(f"Wrote {args.out_dir}/train, val, report.json, report.txt")
    return 0 if report.kept else 1


if __name__ == "__main__":
    raise SystemExit(main())
