from comfy_api.latest import io, ui

from ..core.preview import crop_box_preview
from .types import CATEGORY, CropBoxType


class PreviewFaceCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiPreviewFaceCrop",
            display_name="ETHMumbai Preview Face Crop",
            category=CATEGORY,
            description=(
                "Shows on the canvas where the face crop was taken: the photo with the crop box drawn, and the "
                "crop beside it. An editor preview (ComfyUI's temp folder, no metadata); the converter leaves it "
                "out of the API graph the worker runs."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The photo the face crop was taken from."),
                io.Image.Input("face", tooltip="The face crop's face output."),
                CropBoxType.Input("crop_box", tooltip="The face crop's crop_box output."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image, face, crop_box) -> io.NodeOutput:
        # No cls: ComfyUI would write the prompt and workflow into the PNG.
        return io.NodeOutput(ui=ui.PreviewImage(crop_box_preview(image, face, crop_box)))
