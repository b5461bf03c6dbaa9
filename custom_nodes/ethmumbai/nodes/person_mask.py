from comfy_api.latest import io

from ..core.segment import person_mask
from .types import CATEGORY


class PersonMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiPersonMask",
            display_name="ETHMumbai Person Mask",
            category=CATEGORY,
            description="Segments the person (mediapipe's bundled selfie-segmentation model) into a mask with a "
                        "soft edge.",
            inputs=[
                io.Image.Input("image", tooltip="Photo or face crop; every image of a batch gets its own mask."),
                io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Person probability at or above which a pixel belongs to the mask."),
                io.Int.Input("feather", default=8, min=0, max=256,
                             tooltip="Width of the soft edge in pixels (0 = hard edge)."),
            ],
            outputs=[io.Mask.Output("mask", display_name="mask", tooltip="1 on the person, 0 on the background.")],
        )

    @classmethod
    def execute(cls, image, threshold: float, feather: int) -> io.NodeOutput:
        return io.NodeOutput(person_mask(image, threshold, feather))
