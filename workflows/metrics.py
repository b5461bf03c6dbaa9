"""Quality metrics of one avatar against the photo it was made from (used by ``python -m workflows.evaluate``).

Everything is weight-free and uses the pack's own building blocks, so the numbers mean the same thing on every
machine: the face detector and crop mapping of the ``EthMumbaiFaceCrop`` node, its standard lineart, its person
segmentation, and mediapipe's face-mesh landmarks (the 468-point model shipped inside the mediapipe wheel).

The avatar is the stylized face crop, so the reference for every metric is the photo's crop as the workflow's
face-crop node cuts it (same detector, margin and output size). How to read each metric: the workflow README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import procrustes
from skimage.metrics import structural_similarity

from custom_nodes.ethmumbai.core import crop
from custom_nodes.ethmumbai.core.face import MEDIAPIPE_PIP, Face, detect_faces, rank_faces
from custom_nodes.ethmumbai.core.lineart import standard_lineart
from custom_nodes.ethmumbai.core.models import optional_import, shared_model
from custom_nodes.ethmumbai.core.segment import person_probability

METRICS = ("face_found", "face_iou", "structure_ssim", "identity", "silhouette_iou")
# ControlNet++ measures LineArt SSIM at 512² (their 0.84; ControlNet 1.1 0.71): compare at the same size.
STRUCTURE_SIZE = 512
PERSON_THRESHOLD = 0.5  # the person-mask node's default threshold


@dataclass(frozen=True)
class CropSettings:
    """The face-crop node's inputs that decide where the crop is (read from the workflow graph)."""

    margin: float = 0.6
    detector: str = "auto"
    min_confidence: float = 0.5

    @classmethod
    def from_node(cls, inputs: dict) -> CropSettings:
        return cls(float(inputs["margin"]), str(inputs["detector"]), float(inputs["min_confidence"]))


def _face_mesh():
    # FaceMesh() itself cannot be built with protobuf >= 5 (it sets calculator options through a descriptor field
    # protobuf removed); the same graph with its default thresholds (0.5) needs no option changes.
    solution_base = optional_import("mediapipe.python.solution_base", MEDIAPIPE_PIP, "face landmarks")
    face_mesh = optional_import("mediapipe.python.solutions.face_mesh", MEDIAPIPE_PIP, "face landmarks")
    return shared_model("mediapipe_face_mesh", lambda: solution_base.SolutionBase(
        binary_graph_path=face_mesh._BINARYPB_FILE_PATH,
        side_inputs={"num_faces": 1, "with_attention": False, "use_prev_landmarks": False},
        outputs=["multi_face_landmarks"]))


def face_landmarks(pixels: np.ndarray) -> np.ndarray | None:
    """The 468 face-mesh landmarks (x, y in pixels) of the most prominent face in a uint8 RGB image, or None."""
    mesh = _face_mesh()
    with mesh.lock:
        found = mesh.model.process(input_data={"image": np.ascontiguousarray(pixels)}).multi_face_landmarks
    if not found:
        return None
    height, width = pixels.shape[:2]
    return np.array([(point.x * width, point.y * height) for point in found[0].landmark], np.float64)


def identity(reference: np.ndarray | None, candidate: np.ndarray | None) -> float:
    """Face-geometry similarity of two landmark sets: 1 − the RMS distance between them after Procrustes
    alignment (position, scale, rotation removed; both scaled to unit size). 1.0 for the same face; 0.0 when the
    candidate has no face at all."""
    if reference is None or candidate is None:
        return 0.0
    _, _, disparity = procrustes(reference, candidate)
    return float(max(0.0, 1.0 - np.sqrt(disparity)))


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree (1.0)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def lineart_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the standard lineart of two uint8 RGB images, both at STRUCTURE_SIZE²."""
    size = (STRUCTURE_SIZE, STRUCTURE_SIZE)
    lines = [standard_lineart(crop.resize(np.ascontiguousarray(image), *size)) for image in (a, b)]
    return float(structural_similarity(lines[0], lines[1], data_range=255))


def _person(pixels: np.ndarray) -> np.ndarray:
    return person_probability(pixels) >= PERSON_THRESHOLD


def _largest_face(pixels: np.ndarray, settings: CropSettings) -> Face | None:
    faces = detect_faces(pixels, settings.detector, settings.min_confidence)
    return rank_faces(faces, "largest", pixels.shape[1], pixels.shape[0])[0] if faces else None


class Reference:
    """What one photo contributes to the metrics at one avatar size, computed once for all its renders."""

    def __init__(self, photo: np.ndarray, size: int, settings: CropSettings = CropSettings()):
        """``photo``: uint8 RGB as the worker decodes it (EXIF-oriented); ``size``: the avatar's side in pixels."""
        self.size = size
        self.settings = settings
        height, width = photo.shape[:2]
        face = _largest_face(photo, settings)
        if face is None:  # the worker refuses it (NO_FACE_DETECTED) unless the crop falls back to the centre
            self.crop = crop.extract(photo, crop.centre_box(width, height, size))
            self.face_box = None
        else:
            box = crop.box_around(face.x, face.y, face.w, face.h, settings.margin, width, height, size)
            self.crop = crop.extract(photo, box)
            # The face as the detector sees it in the crop, where the avatar is judged: its box differs by up to
            # ~20% IoU from the photo's box mapped through the crop (the detector's box depends on the face's
            # scale in the frame), which would cap an unchanged crop below 1.0.
            seen = _largest_face(self.crop, settings)
            if seen is None:
                x0, y0 = box.to_output(face.x, face.y)
                x1, y1 = box.to_output(face.x + face.w, face.y + face.h)
                seen = Face(x0, y0, x1 - x0, y1 - y0, face.score)
            self.face_box = (seen.x, seen.y, seen.w, seen.h)
        self.landmarks = face_landmarks(self.crop)
        self.person = _person(self.crop)

    def score(self, avatar: np.ndarray) -> dict[str, float | bool | None]:
        """Every metric of ``avatar`` (uint8 RGB). A metric the photo itself cannot support is None."""
        if avatar.shape[:2] != (self.size, self.size):
            avatar = crop.resize(np.ascontiguousarray(avatar), self.size, self.size)
        face = _largest_face(avatar, self.settings)
        face_iou = None
        if self.face_box is not None:
            face_iou = box_iou(self.face_box, (face.x, face.y, face.w, face.h)) if face else 0.0
        return {
            "face_found": face is not None,
            "face_iou": face_iou,
            "structure_ssim": lineart_ssim(self.crop, avatar),
            "identity": identity(self.landmarks, face_landmarks(avatar)) if self.landmarks is not None else None,
            "silhouette_iou": mask_iou(self.person, _person(avatar)),
        }


def rgb_array(image) -> np.ndarray:
    """A PIL image as uint8 RGB (alpha dropped, greyscale expanded)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)

