"""The V3 node classes: each declares its interface and calls one function in ``core/``."""

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from .composite import BackgroundComposite
from .face_crop import FaceCrop
from .guidance import GuidanceEnd
from .lineart import Lineart
from .load_image import LoadImageBase64, LoadImageUpload
from .person_mask import PersonMask
from .preview import PreviewFaceCrop
from .save_image import SaveImageBase64

NODES = [LoadImageBase64, LoadImageUpload, FaceCrop, PersonMask, Lineart, BackgroundComposite, SaveImageBase64,
         PreviewFaceCrop, GuidanceEnd]


class EthMumbaiExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
