import os

import comfy.model_management
import folder_paths
from comfy_api.latest import io

from ..core.lineart import METHODS, lineart
from .types import CATEGORY


def _annotator_dirs() -> list[str]:
    """ComfyUI's 'annotators' model folders (declared in extra_model_paths.yaml), else models/annotators."""
    try:
        return folder_paths.get_folder_paths("annotators")
    except KeyError:
        return [os.path.join(folder_paths.models_dir, "annotators")]


class Lineart(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiLineart",
            display_name="ETHMumbai Lineart",
            category=CATEGORY,
            description=(
                "Makes a ControlNet lineart image (white lines on black, same size as the input). 'standard' "
                "needs no model weights. 'lineart_learned', 'hed' and 'pidi' use controlnet-aux with weight "
                "files from the 'annotators' model folder; they are never downloaded at run time."
            ),
            inputs=[
                io.Image.Input("image", tooltip="Photo or face crop."),
                io.Combo.Input("method", options=list(METHODS), default="standard",
                               tooltip="standard: weight-free Gaussian-difference lineart. Others: learned "
                                       "detectors (need controlnet-aux and their weights)."),
                io.Int.Input("resolution", default=1024, min=64, max=4096, step=8,
                             tooltip="Short side, in pixels, at which the lines are computed; the result is "
                                     "resized back to the input size."),
            ],
            outputs=[io.Image.Output("lineart", display_name="lineart", tooltip="White lines on black.")],
        )

    @classmethod
    def execute(cls, image, method: str, resolution: int) -> io.NodeOutput:
        device = str(comfy.model_management.get_torch_device())
        return io.NodeOutput(lineart(image, method, resolution, _annotator_dirs(), device))
