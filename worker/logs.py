"""The worker's log: one JSON object per line on stdout, ComfyUI's own lines included, tagged with the running job.

Every line has ``time``, ``level``, ``logger`` and ``message``; a record's ``fields`` (``logger.info(...,
extra={"fields": {...}})``) are merged in at the top level, which is how the per-job line (worker/analytics.py) and
the ``job_id`` of ComfyUI's lines get there. Nothing here sees job inputs or outputs: callers log names and codes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime

comfy_log = logging.getLogger("comfyui")
# tqdm redraws a bar many times a second; only its finished state is worth a line.
_PROGRESS_BAR = re.compile(r"^\s*(\d+)%\|")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


class RunningJobs:
    """The ids of the jobs in flight, so ComfyUI's lines can name the job they belong to."""

    def __init__(self):
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids.append(job_id)

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._ids.remove(job_id)

    def tag(self) -> dict:
        with self._lock:
            return {"job_id": ",".join(self._ids)} if self._ids else {}

    def comfy_line(self, line: str) -> None:
        """One line of ComfyUI's output, as a JSON log line with the running job's id."""
        bar = _PROGRESS_BAR.match(line)
        if bar and bar.group(1) != "100":
            return
        comfy_log.info(line.rstrip(), extra={"fields": self.tag()})
