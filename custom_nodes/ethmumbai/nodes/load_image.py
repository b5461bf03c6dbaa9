from comfy_api.latest import io

from ..core.image_io import load_base64_image
from .types import CATEGORY


class LoadImageBase64(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiLoadImageBase64",
            display_name="ETHMumbai Load Image (Base64)",
            category=CATEGORY,
            description=(
                "Decodes a base64 PNG, JPEG or WebP (raw or a data: URI) into an image and its alpha mask, "
                "applying EXIF orientation. Oversized, animated, corrupt and non-image inputs are refused "
                "with a clear error before they are decoded. Nothing is written to disk."
            ),
            inputs=[
                io.String.Input("image_base64", multiline=True, default="",
                                tooltip="Base64 of a PNG/JPEG/WebP file, or a data:image/...;base64, URI."),
                io.Int.Input("max_bytes", default=20_000_000, min=1, max=200_000_000,
                             tooltip="Largest accepted file size in bytes (checked before decoding base64)."),
                io.Int.Input("max_pixels", default=40_000_000, min=1, max=150_000_000,
                             tooltip="Largest accepted width x height (read from the file header, so "
                                     "decompression bombs are refused before decoding)."),
            ],
            outputs=[
                io.Image.Output("image", display_name="image", tooltip="RGB image; CMYK, palette, 16-bit and greyscale are converted."),
                io.Mask.Output("mask", display_name="mask", tooltip="Alpha channel, 1 = opaque (all ones if the image has no alpha)."),
            ],
        )

    @classmethod
    def execute(cls, image_base64: str, max_bytes: int, max_pixels: int) -> io.NodeOutput:
        return io.NodeOutput(*load_base64_image(image_base64, max_bytes, max_pixels))
