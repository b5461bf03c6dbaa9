from comfy_api.latest import io

from ..core.face import require_person
from ..core.segment import ISLAND_CHOICES, REFINE_CHOICES, person_mask
from .types import CATEGORY


class PersonMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiPersonMask",
            display_name="ETHMumbai Person Mask",
            category=CATEGORY,
            description="Segments the person (mediapipe's bundled selfie-segmentation model) into a mask, keeps "
                        "the person (the part touching the face) and drops detached islands, and fits the soft "
                        "edge to the photo's own edges. With the face crop's face_mask connected, stops with "
                        "NO_PERSON_DETECTED when the mask barely covers the face (no person, no avatar).",
            inputs=[
                io.Image.Input("image", tooltip="Photo or face crop; every image of a batch gets its own mask."),
                io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Person probability at or above which a pixel belongs to the mask."),
                io.Int.Input("feather", default=8, min=0, max=256,
                             tooltip="Width of the soft edge in pixels (0 = hard edge); with refine 'image', how "
                                     "far the edge may move to meet the photo's outline."),
                io.Combo.Input("refine", options=list(REFINE_CHOICES), default="image", optional=True,
                               tooltip="'image': fit the segmenter's coarse (256 px) edge to the photo's edges "
                                       "(guided filter); 'none': blur it evenly (before 1.1)."),
                io.Combo.Input("islands", options=list(ISLAND_CHOICES), default="drop", optional=True,
                               tooltip="'drop': keep only the person, the part touching face_mask (or the "
                                       "largest part); 'keep': every part the segmenter found."),
                io.Mask.Input("face_mask", optional=True,
                              tooltip="The face crop's face mask: the part of the mask touching it is the person; "
                                      "fails with NO_PERSON_DETECTED unless the mask covers at least 30% of the face "
                                      "box (an empty face mask is not checked)."),
            ],
            outputs=[io.Mask.Output("mask", display_name="mask", tooltip="1 on the person, 0 on the background.")],
        )

    @classmethod
    def execute(cls, image, threshold: float, feather: int, refine: str = "image", islands: str = "drop",
                face_mask=None) -> io.NodeOutput:
        mask = person_mask(image, threshold, feather, refine, islands, face_mask)
        if face_mask is not None:
            require_person(mask, face_mask)
        return io.NodeOutput(mask)
