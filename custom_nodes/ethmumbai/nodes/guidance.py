import comfy.patcher_extension
from comfy_api.latest import io

from .types import CATEGORY

WRAPPER_KEY = "ethmumbai_guidance_end"


class GuidanceEnd(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EthMumbaiGuidanceEnd",
            display_name="ETHMumbai Guidance End",
            category=CATEGORY,
            description=(
                "Classifier-free guidance only on the early part of the schedule: after end_percent the sampler "
                "runs at cfg 1, where ComfyUI skips the negative prompt's pass, so each of those steps costs one "
                "model evaluation instead of two. The composition and the prompt's hold are set while the image "
                "is noisy; the late steps refine detail. At 1.0 the model passes through unchanged."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with, after its LoRAs."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the denoising schedule (as ControlNet's end_percent) after "
                                       "which guidance stops; 1.0 keeps it on every step."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The same model, guided only up to end_percent.")],
        )

    @classmethod
    def execute(cls, model, end_percent: float) -> io.NodeOutput:
        if end_percent >= 1.0:
            return io.NodeOutput(model)
        sigma_end = model.get_model_object("model_sampling").percent_to_sigma(end_percent)

        def predict_noise(executor, x, timestep, model_options=None, seed=None):
            guider = executor.class_obj  # the CFGGuider; its cfg is what sampling_function compares with 1
            if float(timestep.max()) >= sigma_end:
                return executor(x, timestep, model_options, seed)
            cfg, guider.cfg = guider.cfg, 1.0
            try:
                return executor(x, timestep, model_options, seed)
            finally:
                guider.cfg = cfg

        patched = model.clone()
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY, predict_noise)
        return io.NodeOutput(patched)
