"""Custom socket types shared by the nodes."""

from comfy_api.latest import io

CATEGORY = "ETHMumbai"
# Carries a core.crop.CropBox from the face crop to the composite's paste-back.
CropBoxType = io.Custom("ETHMUMBAI_CROP_BOX")
