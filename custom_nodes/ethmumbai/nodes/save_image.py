from comfy_api.latest import io

from ..core.image_io import OUTPUT_FORMATS, save_base64_images
from .types import CATEGORY


class SaveImageBase64(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiSaveImageBase64",
            display_name="ETHMumbai Save Image (Base64)",
            category=CATEGORY,
            description=(
                "Encodes the images as PNG, WebP or JPEG and returns them as base64 in the node's UI output "
                "('ethmumbai_images'). No file is written and no metadata (prompt, workflow, EXIF) is embedded."
            ),
            inputs=[
                io.Image.Input("images", tooltip="Images to encode; each becomes one entry of ethmumbai_images."),
                io.Combo.Input("format", options=list(OUTPUT_FORMATS), default="png",
                               tooltip="png is lossless; webp and jpeg use quality."),
                io.Int.Input("quality", default=95, min=1, max=100,
                             tooltip="WebP/JPEG quality (1-100); ignored for PNG."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, format: str, quality: int) -> io.NodeOutput:
        return io.NodeOutput(ui={"ethmumbai_images": save_base64_images(images, format, quality)})
