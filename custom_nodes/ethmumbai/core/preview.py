"""Editor-only pictures of a stage: what the artist looks at, never part of the worker's graph."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from . import crop
from .composite import parse_colour
from .tensors import batch_arrays, rgb

BOX_COLOUR = "#F7931E"  # the brand orange, visible on most photos


def crop_box_preview(image: torch.Tensor, face: torch.Tensor, box: crop.CropBox) -> torch.Tensor:
    """One picture ``[1,H,W',3]``: the photo with the crop box outlined, and the crop beside it at the same height."""
    frame = rgb(batch_arrays(image)[0]).copy()  # a view of the photo otherwise: ComfyUI caches it for other nodes
    height = frame.shape[0]
    thickness = max(2, round(min(frame.shape[:2]) / 150))
    cv2.rectangle(frame, (box.x, box.y), (box.x + box.size - 1, box.y + box.size - 1),
                  parse_colour(BOX_COLOUR).tolist(), thickness)
    square = crop.resize(np.ascontiguousarray(rgb(batch_arrays(face)[0])), height, height)
    return torch.from_numpy(np.concatenate([frame, square], axis=1)).unsqueeze(0)
