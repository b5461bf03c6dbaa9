"""What a run shows while it trains: a progress bar with ETA (plain log lines when not on a terminal),
``loss.csv`` beside ``losses.json``, and TensorBoard scalars when TensorBoard is installed."""

from __future__ import annotations

import csv
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("training")


def duration(seconds: float) -> str:
    """``1h02m`` / ``3m05s`` / ``12s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def write_loss_csv(path: Path, losses: list[float], smoothed: list[float], lrs: list[float]) -> None:
    """One row per training step: ``step,loss,loss_ema,lr`` (rewritten whole, so a resumed run stays consistent)."""
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss", "loss_ema", "lr"])
        for step, (loss, ema, lr) in enumerate(zip(losses, smoothed, lrs, strict=True), start=1):
            writer.writerow([step, f"{loss:.6g}", f"{ema:.6g}", f"{lr:.6g}"])
    partial.replace(path)


class Progress:
    """Progress of one training session from ``start`` to ``total`` steps; ETA from this session's rate."""

    def __init__(self, total: int, start: int, log_every: int, tensorboard_dir: Path | None = None):
        self.total, self.start, self.log_every = total, start, log_every
        self.began = time.monotonic()
        self.paused_at = self.began
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
        self.tensorboard = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("TensorBoard not installed: loss.csv has the same numbers (pip install tensorboard "
                         "for live curves)")
            else:
                self.tensorboard = SummaryWriter(str(tensorboard_dir))
                log.info("TensorBoard: tensorboard --logdir %s", tensorboard_dir)

    def pause(self) -> None:
        """Checkpoints and renders are not training: the time until ``resume`` is left out of the rate."""
        self.paused_at = time.monotonic()

    def resume(self) -> None:
        self.began += time.monotonic() - self.paused_at

    def eta(self, step: int) -> tuple[float, float]:
        """(steps per second in this session, seconds left)."""
        rate = (step - self.start) / max(time.monotonic() - self.began, 1e-9)
        return rate, (self.total - step) / rate if rate > 0 else float("inf")

    def update(self, step: int, loss: float, smoothed: float, lr: float) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("loss/train", loss, step)
            self.tensorboard.add_scalar("loss/train_ema", smoothed, step)
            self.tensorboard.add_scalar("lr", lr, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", ema=f"{smoothed:.4f}", lr=f"{lr:.2g}", refresh=False)
            self.bar.update(step - self.bar.n)  # draws the bar with this step's postfix
        elif step % self.log_every == 0 or step == self.total:
            rate, left = self.eta(step)
            log.info("step %d/%d loss %.4f (EMA %.4f) lr %.3g, %.2f it/s, ETA %s", step, self.total, loss, smoothed,
                     lr, rate, duration(left))

    def validation(self, step: int, loss: float) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("loss/validation", loss, step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
