"""Reading ComfyUI's prompt rejections in the workflow's terms.

ComfyUI checks every combo input of a prompt against the files it has, so a model file that is not on disk
comes back from ``POST /prompt`` (HTTP 400) as a ``value_not_in_list`` error in ``node_errors``, e.g.
``{"5": {"errors": [{"type": "value_not_in_list", "extra_info": {"input_name": "ckpt_name",
"received_value": "sd_xl_base_1.0.safetensors", ...}}], "class_type": "CheckpointLoaderSimple"}}``.
``missing_models`` turns the ones on the params file's model inputs into named files to fetch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MissingModel:
    node: str
    input: str
    folder: str  # ComfyUI model folder: checkpoints, loras, controlnet, ...
    filename: str

    @property
    def message(self) -> str:
        return (f"model {self.filename!r} is missing from the {self.folder} folder; "
                f"fetch it with: python scripts/fetch_models.py --only {self.filename}")


def missing_models(node_errors: dict, params: dict) -> list[MissingModel]:
    """Every model file a ``/prompt`` rejection reports absent, in params-file order.

    ``node_errors`` is the rejection's ``node_errors``; ``params`` is the parsed ``vN.params.json`` (its
    ``models`` list says which node inputs are model files). Other errors, on any input, are not included.
    """
    missing = []
    for model in params.get("models", []):
        node = str(model["node"])
        for error in (node_errors.get(node) or {}).get("errors", []):
            extra = error.get("extra_info") or {}
            if error.get("type") == "value_not_in_list" and extra.get("input_name") == model["input"]:
                missing.append(MissingModel(node, model["input"], model["folder"], str(extra.get("received_value"))))
    return missing
