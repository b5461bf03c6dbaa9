"""The editor's face-crop preview (core/preview.py): the crop box outlined on the photo, the crop beside it."""

from __future__ import annotations

import numpy as np
import torch

from custom_nodes.ethmumbai.core.composite import parse_colour
from custom_nodes.ethmumbai.core.crop import CropBox
from custom_nodes.ethmumbai.core.preview import BOX_COLOUR, crop_box_preview
from tools.images import astronaut, to_tensor


def test_the_box_is_drawn_where_the_crop_came_from_and_the_crop_sits_beside_the_photo():
    photo = to_tensor(astronaut())  # 512x512
    box = CropBox(512, 512, x=100, y=40, size=200, output_size=64)
    face = torch.full((1, 64, 64, 3), 0.2)
    face[:, :, 32:] = 0.8
    (preview,) = crop_box_preview(photo, face, box).numpy()
    assert preview.shape == (512, 1024, 3)
    orange = parse_colour(BOX_COLOUR)
    left, right = preview[:, :512], preview[:, 512:]
    assert np.allclose(left[40, 100:300], orange) and np.allclose(left[40:240, 299], orange), "the box's edges"
    untouched = np.ones((512, 512), bool)
    untouched[30:250, 90:310] = False
    assert np.array_equal(left[untouched], photo[0].numpy()[untouched]), "nothing drawn away from the box"
    assert np.allclose(right[:, :240], 0.2) and np.allclose(right[:, 272:], 0.8), "the crop at the photo's height"
    assert photo[0, 40, 150].tolist() != orange.tolist(), "the input photo is left as it was"


def test_a_box_reaching_past_the_border_is_clipped():
    photo = to_tensor(astronaut()[:300])  # 512 wide, 300 high
    box = CropBox(512, 300, x=-50, y=200, size=200, output_size=32)
    (preview,) = crop_box_preview(photo, torch.zeros(1, 32, 32, 3), box).numpy()
    assert preview.shape == (300, 812, 3)
    assert np.allclose(preview[200, 0:149], parse_colour(BOX_COLOUR)), "the top edge, from the frame's left side"
