"""Download and verify the model files listed in models_manifest.yaml.

    python scripts/fetch_models.py                         # the required models into models/
    python scripts/fetch_models.py --only all              # every pinned entry
    python scripts/fetch_models.py --only annotator_lineart,sdxl_base
    python scripts/fetch_models.py --target /runpod-volume/models   # a RunPod network volume
    python scripts/fetch_models.py --verify                # offline: hash what is on disk, download nothing

--only takes `required` (default), `all`, entry names, group names or file names, comma-separated.
Hugging Face entries go through huggingface_hub (pinned revision; HF_TOKEN for gated repos; HF_ENDPOINT
honoured), URL entries through plain HTTP with Range resume. Every file is sha256-checked before it is moved
into place; a file that fails the check is deleted. Files already present and verified are not downloaded
again (a stamp under <target>/.fetch_models/ saves re-hashing them on the next run).

Exit codes: 0 all selected files present and verified; 1 a download or its check failed;
2 usage or manifest error; 3 --verify found files missing or not matching the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root is not on the path

from avatar_driver import paths  # noqa: E402
from avatar_driver.manifest import (  # noqa: E402
    CHUNK,
    Manifest,
    ManifestError,
    ModelEntry,
    fetch_command,
    load_manifest,
    progress_bar,
    sha256_file,
)

STATE_DIR = ".fetch_models"  # under the target: partial downloads, Hugging Face staging, verification stamps
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_VERIFIED = 0, 1, 2, 3


def select(manifest: Manifest, only: str) -> list[ModelEntry]:
    """Entries for an --only value: `required`, `all` (pinned ones), or names/groups/file names."""
    chosen: list[ModelEntry] = []
    for word in filter(None, (w.strip() for w in only.split(","))):
        if word == "required":
            found = [m for m in manifest.models if m.required]
        elif word == "all":
            found = [m for m in manifest.models if m.pinned]
        else:
            found = [m for m in manifest.models if word in (m.name, m.group, m.filename)]
        if not found:
            known = ", ".join(["required", "all"] + [m.name for m in manifest.models])
            raise ManifestError(f"--only {word!r} matches nothing in the manifest (known: {known})")
        chosen += [m for m in found if m not in chosen]
    return chosen


# ---------------------------------------------------------------- files on disk


class FetchError(Exception):
    pass


@dataclass(frozen=True)
class Layout:
    """Where an entry's file, partial download, staging folder and verification stamp live under a target."""

    target: Path

    def dest(self, entry: ModelEntry) -> Path:
        return self.target / entry.folder / entry.filename

    def partial(self, entry: ModelEntry) -> Path:
        return self.target / STATE_DIR / "partial" / entry.folder / f"{entry.filename}.part"

    def staging(self, entry: ModelEntry) -> Path:
        return self.target / STATE_DIR / "hf" / entry.name

    def stamp(self, entry: ModelEntry) -> Path:
        return self.target / STATE_DIR / "verified" / entry.folder / f"{entry.filename}.json"


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_stamp(layout: Layout, entry: ModelEntry, sha256: str) -> None:
    stamp = layout.stamp(entry)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({**_stat_key(layout.dest(entry)), "sha256": sha256}))


def stamped(layout: Layout, entry: ModelEntry) -> bool:
    """True if the file is unchanged since it was last verified against the manifest's sha256."""
    try:
        saved = json.loads(layout.stamp(entry).read_text())
        return saved == {**_stat_key(layout.dest(entry)), "sha256": entry.sha256}
    except (OSError, ValueError):
        return False


def check_file(layout: Layout, entry: ModelEntry, trust_stamp: bool) -> str | None:
    """None if the file on disk is the manifest's file, else why not ("missing", "size ...", "sha256 ...")."""
    dest = layout.dest(entry)
    if not dest.is_file():
        return "missing"
    size = dest.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"size {size} != manifest {entry.size}"
    if entry.sha256 is None or (trust_stamp and stamped(layout, entry)):
        return None
    actual = sha256_file(dest, entry.relpath)
    if actual != entry.sha256:
        return f"sha256 {actual} != manifest {entry.sha256}"
    write_stamp(layout, entry, actual)
    return None


def install_verified(layout: Layout, entry: ModelEntry, downloaded: Path) -> str:
    """Hash a finished download; move it into place if it matches, delete it if not."""
    actual = sha256_file(downloaded, entry.relpath)
    if entry.sha256 is not None and actual != entry.sha256:
        downloaded.unlink()
        raise FetchError(
            f"sha256 mismatch: got {actual}, manifest says {entry.sha256}; deleted the downloaded file {downloaded}"
        )
    dest = layout.dest(entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(downloaded, dest)
    if entry.sha256 is not None:
        write_stamp(layout, entry, actual)
    return actual


# ---------------------------------------------------------------- downloads


def download_url(url: str, part: Path, expected_size: int | None, retries: int, session: requests.Session) -> None:
    """Download ``url`` into ``part``, resuming from what is already there (HTTP Range)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            part.unlink()  # not a prefix of this file: start over
            offset = 0
        if expected_size is not None and offset == expected_size:
            return
        # identity: Range offsets must count the file's own bytes, not a compressed stream's.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        try:
            with session.get(url, headers=headers, stream=True, timeout=(15, 60)) as response:
                if response.status_code == 416 and offset:
                    part.unlink()  # the server says our partial is not a prefix it can continue
                    continue
                if response.status_code >= 400:
                    raise FetchError(f"HTTP {response.status_code} for {url}")
                resumed = response.status_code == 206 and _content_range_start(response) == offset
                if offset and not resumed:
                    offset = 0  # the server sent the whole file: overwrite
                length = int(response.headers.get("Content-Length", 0)) or None
                total = expected_size or (offset + length if length else None)
                with part.open("ab" if resumed else "wb") as out, progress_bar(total, part.name[:-5]) as bar:
                    bar.update(offset)
                    # read1 hands over whatever arrived, so a dropped connection keeps every byte received.
                    while chunk := response.raw.read1(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
            if expected_size is None or part.stat().st_size == expected_size:
                return
            raise requests.ConnectionError(f"got {part.stat().st_size} of {expected_size} bytes")
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if attempt == retries:
                kept = part.stat().st_size if part.exists() else 0
                raise FetchError(f"{exc} after {retries} attempt(s); kept {kept} bytes in {part} to resume") from exc
            log(f"retry {attempt}/{retries - 1} for {url}: {exc}")
            time.sleep(min(2 ** (attempt - 1), 10))
    raise FetchError(f"{url}: the server refused to resume the partial download; deleted it, run again to restart")


def _content_range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def download_hf(entry: ModelEntry, staging: Path) -> Path:
    """Download an HF entry's file into ``staging`` (huggingface_hub resumes its own partial files)."""
    import huggingface_hub  # imported here so --verify and URL entries work without touching the hub client
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    hf = entry.source.hf
    try:
        return Path(huggingface_hub.hf_hub_download(hf.repo, hf.file, revision=hf.revision, local_dir=staging))
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise FetchError(
            f"cannot download {hf.repo}/{hf.file}: Hugging Face is offline or unreachable "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}); on a machine with network run "
            f"`HF_HUB_OFFLINE=0 {fetch_command(entry.name)}` ({exc})"
        ) from exc
    except GatedRepoError as exc:
        raise FetchError(f"{hf.repo} is gated: accept its licence on the hub and set HF_TOKEN ({exc})") from exc
    except HfHubHTTPError as exc:
        raise FetchError(f"{hf.repo}/{hf.file}@{hf.revision}: {exc}") from exc


def fetch_one(layout: Layout, entry: ModelEntry, retries: int, session: requests.Session) -> str:
    """Make the entry's file present and verified; returns a status line (raises FetchError)."""
    problem = check_file(layout, entry, trust_stamp=True)
    if problem is None:
        return "present" if entry.pinned else "present (not pinned: unverified)"
    if problem != "missing":
        log(f"{entry.relpath}: {problem}; downloading it again")
    if entry.source.url:
        part = layout.partial(entry)
        download_url(entry.source.url, part, entry.size, retries, session)
        downloaded = part
    else:
        downloaded = download_hf(entry, layout.staging(entry))
    actual = install_verified(layout, entry, downloaded)
    shutil.rmtree(layout.staging(entry), ignore_errors=True)
    if entry.pinned:
        return "downloaded, sha256 ok"
    return f"downloaded, NOT verified (no sha256 in manifest): sha256 {actual} size {layout.dest(entry).stat().st_size}"


# ---------------------------------------------------------------- commands


def log(msg: str) -> None:
    tqdm.write(f"[fetch_models] {msg}", file=sys.stderr)


def run_all(entries: list[ModelEntry], work: Callable[[ModelEntry], str], jobs: int) -> list[str]:
    """Run ``work`` on every entry (in parallel); returns the relpaths that failed."""
    failed: list[str] = []

    def one(entry: ModelEntry) -> None:
        try:
            log(f"ok      {entry.relpath}: {work(entry)}")
        except FetchError as exc:
            failed.append(entry.relpath)
            log(f"FAILED  {entry.relpath}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, entries))
    return failed


def verify(layout: Layout, entries: list[ModelEntry]) -> int:
    bad = 0
    for entry in entries:
        problem = check_file(layout, entry, trust_stamp=False)
        if problem is None and not entry.pinned:
            log(f"UNPINNED {entry.relpath}: present but the manifest has no sha256 to check (todo: {entry.todo})")
        elif problem is None:
            log(f"ok       {entry.relpath}")
        else:
            bad += 1
            hint = "" if problem == "missing" else "; run without --verify to replace it"
            log(f"BAD      {entry.relpath}: {problem}{hint}")
    unpinned = [m.name for m in entries if not m.pinned]
    if unpinned:
        log(f"not pinned in the manifest (sha256/size TODO): {', '.join(unpinned)}")
    log(f"verify: {len(entries) - bad} of {len(entries)} ok under {layout.target}")
    return EXIT_NOT_VERIFIED if bad else EXIT_OK


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--manifest", type=Path, default=paths.models_manifest())
    parser.add_argument(
        "--target", type=Path, default=Path(os.environ.get("MODELS_DIR", paths.REPO_ROOT / "models")),
        help="models folder (default $MODELS_DIR or models/); e.g. /runpod-volume/models",
    )
    parser.add_argument("--only", default="required", help="required | all | names, groups or file names (a,b)")
    parser.add_argument("--verify", action="store_true", help="only check the files on disk (offline)")
    parser.add_argument("--jobs", type=int, default=3, help="parallel downloads (default 3)")
    parser.add_argument("--retries", type=int, default=3, help="attempts per URL download (default 3)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        entries = select(load_manifest(args.manifest), args.only)
    except ManifestError as exc:
        log(str(exc))
        return EXIT_USAGE
    layout = Layout(args.target.resolve())
    if args.verify:
        return verify(layout, entries)
    with requests.Session() as session:
        failed = run_all(entries, lambda e: fetch_one(layout, e, args.retries, session), args.jobs)
    if failed:
        log(f"{len(failed)} of {len(entries)} failed: {', '.join(failed)}")
        return EXIT_FAILED
    log(f"all {len(entries)} present under {layout.target}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
