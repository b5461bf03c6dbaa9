import hashlib
from pathlib import Path

import folder_paths
from comfy_api.latest import io

from ..core.image_io import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, load_base64_image, load_image_file
from .types import CATEGORY

MAX_BYTES = io.Int.Input("max_bytes", default=MAX_IMAGE_BYTES, min=1, max=200_000_000,
                         tooltip="Largest accepted file size in bytes (checked before decoding).")
MAX_PIXELS = io.Int.Input("max_pixels", default=MAX_IMAGE_PIXELS, min=1, max=150_000_000,
                          tooltip="Largest accepted width x height (read from the file header, so "
                                  "decompression bombs are refused before decoding).")
OUTPUTS = [
    io.Image.Output("image", display_name="image", tooltip="RGB image; CMYK, palette, 16-bit and greyscale are converted."),
    io.Mask.Output("mask", display_name="mask", tooltip="Alpha channel, 1 = opaque (all ones if the image has no alpha)."),
]


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
                MAX_BYTES,
                MAX_PIXELS,
            ],
            outputs=OUTPUTS,
        )

    @classmethod
    def execute(cls, image_base64: str, max_bytes: int, max_pixels: int) -> io.NodeOutput:
        return io.NodeOutput(*load_base64_image(image_base64, max_bytes, max_pixels))


def _input_photos() -> list[str]:
    folder = Path(folder_paths.get_input_directory())
    files = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return sorted(folder_paths.filter_files_content_types(files, ["image"]))


class LoadImageUpload(io.ComfyNode):
    """The editor's photo input: ComfyUI's upload widget, the base64 loader's decoding and limits.

    Its widgets after ``photo`` are the base64 loader's, in the same order, so ``python -m workflows.convert``
    turns it into ``EthMumbaiLoadImageBase64`` (empty ``image_base64``) in the API graph the worker queues.
    """

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiLoadImage",
            display_name="ETHMumbai Load Image (Upload)",
            category=CATEGORY,
            description=(
                "The photo for trying the workflow in the editor: drop a file on the node or choose one. "
                "Decoded exactly like the base64 loader (same limits, EXIF orientation, alpha mask). "
                "The converter replaces it with the base64 loader in the API graph the worker runs."
            ),
            inputs=[
                io.Combo.Input("photo", options=_input_photos(), upload=io.UploadType.image,
                               image_folder=io.FolderType.input,
                               tooltip="A PNG, JPEG or WebP in ComfyUI's input folder; drop or choose a file."),
                MAX_BYTES,
                MAX_PIXELS,
            ],
            outputs=OUTPUTS,
        )

    @classmethod
    def validate_inputs(cls, photo: str) -> bool | str:
        if not photo or not Path(folder_paths.get_annotated_filepath(photo)).is_file():
            return "No photo: drop a photo on the ETHMumbai Load Image node (or choose one), then run again."
        return True

    @classmethod
    def fingerprint_inputs(cls, photo: str, **_) -> str:
        # A new upload under the same name must run again, as for ComfyUI's LoadImage.
        return hashlib.sha256(Path(folder_paths.get_annotated_filepath(photo)).read_bytes()).hexdigest()

    @classmethod
    def execute(cls, photo: str, max_bytes: int, max_pixels: int) -> io.NodeOutput:
        return io.NodeOutput(*load_image_file(Path(folder_paths.get_annotated_filepath(photo)), max_bytes, max_pixels))
