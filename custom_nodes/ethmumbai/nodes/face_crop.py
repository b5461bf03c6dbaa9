from comfy_api.latest import io

from ..core.face import DETECTORS, MIN_FACE_PX, MULTIPLE_FACE_POLICIES, NO_FACE_POLICIES, face_crop
from .types import CATEGORY, CropBoxType

# The UI output key: {"ethmumbai_face": [{"faces_found", "face_index", "face_box", "angle", "warnings"}]}
# (avatar_driver/contract.py reads it under the same name)
UI_KEY = "ethmumbai_face"


class FaceCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiFaceCrop",
            display_name="ETHMumbai Face Crop",
            category=CATEGORY,
            # An output node, so ComfyUI sends its report on every run: a cached node that is not an output is
            # skipped without an "executed" message (ComfyUI 0.3.75 execution.py), and a second job with the same
            # photo and another seed would lose faces_found, face_box and the warnings.
            is_output_node=True,
            description=(
                f"Finds the faces (mediapipe's bundled detector over the whole photo and, for faces down to "
                f"{MIN_FACE_PX} px, over tiles of it; OpenCV Haar as fallback), picks one and cuts a square "
                "head-and-shoulders crop around it, turned so a tilted head is upright, resized to "
                "output_size. Parts of the square outside the photo are filled by repeating the edge pixels. "
                "The crop box output lets the composite node turn the stylized crop back and paste it into "
                "the original photo. Reports the faces found, the chosen box and warnings as a UI output."
            ),
            inputs=[
                io.Image.Input("image", tooltip="One photo (batch size 1)."),
                io.Int.Input("output_size", default=1024, min=64, max=4096, step=8,
                             tooltip="Width and height of the square crop in pixels."),
                io.Float.Input("margin", default=0.6, min=0.0, max=3.0, step=0.05,
                               tooltip="Growth of the face box on each side, as a fraction of the face size "
                                       "(0.6 takes the head and some shoulders)."),
                io.Combo.Input("detector", options=list(DETECTORS), default="auto",
                               tooltip="auto: mediapipe, then OpenCV Haar if mediapipe finds nothing or is "
                                       "not installed."),
                io.Combo.Input("multiple_faces", options=list(MULTIPLE_FACE_POLICIES), default="prominent",
                               tooltip="With several faces: prominent crops the face with the largest height x "
                                       "centrality (1 at the centre, 0.5 in a corner); largest crops the largest "
                                       "box; fail stops with MULTIPLE_FACES."),
                io.Combo.Input("on_no_face", options=list(NO_FACE_POLICIES), default="fail",
                               tooltip="With no face: fail with NO_FACE_DETECTED, or take the centred square."),
                io.Float.Input("min_confidence", default=0.5, min=0.05, max=1.0, step=0.05,
                               tooltip="Lowest mediapipe detection score accepted (Haar has no score)."),
                io.Int.Input("face_index", default=0, min=0, max=99, optional=True,
                             tooltip="Which face to crop, in choice order: 0 is the one multiple_faces picks, "
                                     "1 the next, ... A number past the faces found fails with INVALID_INPUT."),
            ],
            outputs=[
                io.Image.Output("face", display_name="face", tooltip="The square crop, output_size x output_size."),
                io.Mask.Output("face_mask", display_name="face_mask", tooltip="1 inside the detected face box (all zeros for a centred crop)."),
                CropBoxType.Output("crop_box", display_name="crop_box", tooltip="Where the crop came from and its turn, for paste-back."),
            ],
        )

    @classmethod
    def execute(cls, image, output_size: int, margin: float, detector: str, multiple_faces: str,
                on_no_face: str, min_confidence: float, face_index: int = 0) -> io.NodeOutput:
        face, mask, box, info = face_crop(image, output_size, margin, detector, multiple_faces, on_no_face,
                                          min_confidence, face_index)
        return io.NodeOutput(face, mask, box, ui={UI_KEY: [info]})
