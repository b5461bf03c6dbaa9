from comfy_api.latest import io

from ..core.composite import background_choices, composite
from .types import CATEGORY, CropBoxType


class BackgroundComposite(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        choices = background_choices()
        return io.Schema(
            node_id="EthMumbaiBackgroundComposite",
            display_name="ETHMumbai Background Composite",
            category=CATEGORY,
            description=(
                "Puts the foreground over an ETHMumbai background (a bundled image, a solid colour or a "
                "gradient) through the mask, with a feathered edge; a bundled background's overlay (the ETHMumbai "
                "ring and name) is then drawn over the person. With 'original' and 'crop_box' connected "
                "it instead pastes the foreground back into the original photo where the face crop came from."
            ),
            inputs=[
                io.Image.Input("foreground", tooltip="The (stylized) person."),
                io.Mask.Input("mask", tooltip="1 where the foreground shows; resized to the foreground if needed."),
                io.Combo.Input("background", options=choices, default=choices[0],
                               tooltip="A bundled background (assets/backgrounds/backgrounds.json), 'solid' (color) or 'gradient' "
                                       "(color at the top to color2 at the bottom)."),
                io.String.Input("color", default="#1B1464", tooltip="#RRGGBB for 'solid' and the gradient's top."),
                io.String.Input("color2", default="#F7931E", tooltip="#RRGGBB for the gradient's bottom."),
                io.Int.Input("feather", default=4, min=0, max=256,
                             tooltip="Extra softening of the mask edge in pixels (0 = use the mask as is)."),
                io.Image.Input("original", optional=True,
                               tooltip="The photo the face crop came from: paste the foreground back into it."),
                CropBoxType.Input("crop_box", optional=True, tooltip="The face crop's box: needed with 'original'; "
                                  "alone, it turns a crop that was turned upright back to the photo's pose."),
                io.Boolean.Input("clean_edge", default=True, optional=True,
                                 tooltip="Replace the colour in the mask's soft edge by the person's own colour, "
                                         "so none of the photo's old backdrop shows (not used when pasting back)."),
            ],
            outputs=[io.Image.Output("image", display_name="image", tooltip="The composited image (the original's size when pasting back).")],
        )

    @classmethod
    def execute(cls, foreground, mask, background: str, color: str, color2: str, feather: int,
                original=None, crop_box=None, clean_edge: bool = True) -> io.NodeOutput:
        return io.NodeOutput(composite(foreground, mask, background, color, color2, feather, original, crop_box,
                                       clean_edge))
