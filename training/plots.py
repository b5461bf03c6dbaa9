"""The loss-curve PNG (matplotlib) and the validation contact sheet (PIL). No metadata is written."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402


def ema(values: list[float], weight: float = 0.95) -> list[float]:
    """Exponential moving average (bias-corrected), the readable line through a noisy diffusion loss."""
    out, level = [], 0.0
    for index, value in enumerate(values, start=1):
        level = weight * level + (1.0 - weight) * value
        out.append(level / (1.0 - weight ** index))
    return out


def loss_curve(path: Path, train: list[float], val: dict[int, float], title: str) -> None:
    """Per-step training loss (raw and smoothed) and the held-out loss at each checkpoint."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps = np.arange(1, len(train) + 1)
    if train:
        ax.plot(steps, train, color="tab:blue", alpha=0.25, linewidth=0.8, label="train loss")
        ax.plot(steps, ema(train), color="tab:blue", linewidth=1.8, label="train loss (EMA)")
    if val:
        ax.plot(list(val), list(val.values()), "o-", color="tab:orange", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE (noise prediction)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def contact_sheet(path: Path, grid: list[list[Image.Image]], row_labels: list[str], col_labels: list[str],
                  title: str, cell: int = 256) -> None:
    """Rows × columns of renders with labels; every image is fitted into a ``cell``² square."""
    font = ImageFont.load_default()
    left, top, header = 160, 28, 22
    sheet = Image.new("RGB", (left + cell * len(col_labels), top + header + cell * len(row_labels)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), title, fill="black", font=font)
    for col, label in enumerate(col_labels):
        draw.text((left + col * cell + 8, top + 4), label, fill="black", font=font)
    for row, (label, images) in enumerate(zip(row_labels, grid, strict=True)):
        y = top + header + row * cell
        draw.text((8, y + cell // 2), label[:24], fill="black", font=font)
        for col, image in enumerate(images):
            thumb = image.convert("RGB")
            thumb.thumbnail((cell, cell))
            sheet.paste(thumb, (left + col * cell + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
