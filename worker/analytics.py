"""One event per job, and the report that reads them back: how many avatars, how fast, how many failed and why.

The worker builds one record per job (``job_event``) and ``EventSink.emit`` writes it to the ``worker.jobs`` log
always (one JSON log line with the record's fields at the top level, worker/logs.py), and to the bucket (``<prefix>/events/day=<UTC day>/``, worker/storage.py) when storage is
configured. A record holds no photo, no image data, no user id and no key: only the fields ``job_event`` takes.

    python -m worker.analytics [--since 7d] [--out DIR]     # events from the bucket (STORAGE_* env)
    python -m worker.analytics --log worker.log             # or from the worker's own log lines

prints jobs per day, p50/p95 seconds per stage, the error rate by code and the cache hit rate, and writes
``DIR/analytics.png`` (a chart of the same) and ``DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from worker.storage import ResultStore, StorageError

log = logging.getLogger(__name__)
job_log = logging.getLogger("worker.jobs")  # the per-job line; its own name so deployments can route it

EVENT = "job"
STAGES = ("queue", "preprocess", "sampling", "encode", "total")  # the job output's timings
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([dh])$")


def job_event(job_id: str, *, workflow_version: str | None, style: str | None, size: int | None,
              timings: dict[str, float], cached: bool, error_code: str | None, gpu: str | None,
              at: datetime | None = None) -> dict:
    """The one record of a job, for the log and the bucket. Nothing else goes in: no input, no output, no user."""
    return {
        "event": EVENT, "time": (at or datetime.now(UTC)).isoformat(timespec="milliseconds"), "job_id": job_id,
        "status": "FAILED" if error_code else "COMPLETED", "error_code": error_code,
        "workflow_version": workflow_version, "style": style, "size": size, "cached": cached, "gpu": gpu,
        "timings": {stage: round(float(timings[stage]), 3) for stage in STAGES if stage in timings},
    }


class EventSink:
    """Where job events go: the ``worker.jobs`` log always, the bucket when there is one (never failing the job)."""

    def __init__(self, store: ResultStore | None):
        self.store = store

    def emit(self, record: dict) -> None:
        job_log.info("job %s %s", record["job_id"], record["status"], extra={"fields": record})
        if self.store is None:
            return
        try:
            line = json.dumps(record, separators=(",", ":"), sort_keys=True)
            self.store.put_event(line, record["job_id"], datetime.fromisoformat(record["time"]))
        except StorageError as err:
            log.warning("analytics event of job %s not stored: %s", record["job_id"], err)


# ---------------------------------------------------------------- reading back


def parse_since(text: str) -> timedelta:
    match = _SINCE.match(text.strip())
    if not match:
        raise ValueError(f"--since takes a number of days or hours, e.g. 7d or 12h, not {text!r}")
    amount = float(match.group(1))
    return timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)


def events_from_lines(lines: Iterable[str], since: datetime) -> Iterator[dict]:
    """Job events among ``lines`` (bucket objects or log lines, whatever precedes the JSON) from ``since`` on."""
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == EVENT and \
                datetime.fromisoformat(record["time"]) >= since:
            yield record


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(events: list[dict]) -> dict:
    """Jobs per day; p50/p95 per stage (stages over jobs that ran a prompt, ``total`` over all completed jobs);
    error rate by code over all jobs; cache hit rate over completed jobs."""
    completed = [e for e in events if e["status"] == "COMPLETED"]
    ran = [e for e in completed if not e["cached"]]
    per_day: dict[str, Counter] = {}
    for event in events:
        per_day.setdefault(event["time"][:10], Counter())[event["status"]] += 1
    stages = {}
    for stage in STAGES:
        values = [e["timings"][stage] for e in (completed if stage == "total" else ran) if stage in e["timings"]]
        if values:
            stages[stage] = {"p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
                             "n": len(values)}
    errors = Counter(e["error_code"] for e in events if e["error_code"])
    return {
        "jobs": len(events),
        "per_day": {day: {"jobs": sum(c.values()), "failed": c["FAILED"]} for day, c in sorted(per_day.items())},
        "stages": stages,
        "error_rate": {code: round(n / len(events), 4) for code, n in errors.most_common()},
        "failed_rate": round(sum(errors.values()) / len(events), 4) if events else 0.0,
        "cache_hit_rate": round(sum(e["cached"] for e in completed) / len(completed), 4) if completed else None,
        "gpus": dict(Counter(e.get("gpu") or "unknown" for e in events)),
    }


def render_text(summary: dict, since: datetime) -> str:
    lines = [f"{summary['jobs']} jobs since {since:%Y-%m-%d %H:%M} UTC", "", "jobs per day (UTC):"]
    lines += [f"  {day}  {c['jobs']:6d} jobs  {c['failed']:6d} failed" for day, c in summary["per_day"].items()]
    lines += ["", "seconds per stage:        p50        p95      n"]
    lines += [f"  {stage:<18} {s['p50']:9.3f}  {s['p95']:9.3f}  {s['n']:5d}" for stage, s in summary["stages"].items()]
    lines += ["", f"error rate: {summary['failed_rate']:.1%} of jobs"]
    lines += [f"  {code:<22} {rate:.1%}" for code, rate in summary["error_rate"].items()]
    hit = summary["cache_hit_rate"]
    lines += ["", f"cache hit rate: {'n/a' if hit is None else f'{hit:.1%}'} of completed jobs"]
    return "\n".join(lines)


def write_chart(summary: dict, path: Path) -> None:
    """Jobs per day (completed and failed) beside p50/p95 per stage."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, (days_ax, stages_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    days = list(summary["per_day"])
    failed = [summary["per_day"][d]["failed"] for d in days]
    done = [summary["per_day"][d]["jobs"] - f for d, f in zip(days, failed, strict=True)]
    days_ax.bar(days, done, label="completed", color="#2a9d8f")
    days_ax.bar(days, failed, bottom=done, label="failed", color="#e76f51")
    days_ax.set_title("jobs per day (UTC)")
    days_ax.legend()
    days_ax.tick_params(axis="x", rotation=30)
    names = list(summary["stages"])
    xs = range(len(names))
    stages_ax.bar([x - 0.2 for x in xs], [summary["stages"][n]["p50"] for n in names], 0.4, label="p50")
    stages_ax.bar([x + 0.2 for x in xs], [summary["stages"][n]["p95"] for n in names], 0.4, label="p95")
    stages_ax.set_xticks(list(xs), names)
    stages_ax.set_ylabel("seconds")
    hit = summary["cache_hit_rate"]
    stages_ax.set_title(f"seconds per stage; errors {summary['failed_rate']:.0%}, cache hits "
                        f"{'n/a' if hit is None else f'{hit:.0%}'}")
    stages_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.analytics", description=__doc__.splitlines()[0])
    parser.add_argument("--since", default="7d", help="how far back: 7d (default), 36h, ...")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for analytics.png and summary.json")
    parser.add_argument("--log", type=Path, help="read the worker's log file instead of the bucket")
    args = parser.parse_args(argv)
    try:
        since = datetime.now(UTC) - parse_since(args.since)
    except ValueError as err:
        parser.error(str(err))
    try:
        if args.log is not None:
            lines: Iterable[str] = args.log.read_text(errors="replace").splitlines()
        else:
            store = ResultStore.from_env()
            if store is None:
                print("STORAGE_BUCKET is not set: give --log FILE to read the worker's log instead", file=sys.stderr)
                return 2
            lines = store.event_lines(since)
        events = list(events_from_lines(lines, since))
    except (StorageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not events:
        print(f"no job events since {since:%Y-%m-%d %H:%M} UTC")
        return 0
    summary = summarize(events)
    print(render_text(summary, since))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_chart(summary, args.out / "analytics.png")
    print(f"\nwrote {args.out / 'analytics.png'} and {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
