"""ETHMumbai avatar nodes for ComfyUI: base64 in/out, face crop, person mask, lineart, branded composite.

ComfyUI finds ``comfy_entrypoint`` (V3 node API). The ComfyUI imports live in ``nodes/`` and are
made only when ComfyUI calls the entrypoint, so ``core/`` stays importable (and testable) without it.
"""

WEB_DIRECTORY = "./web"  # web/docs/<NodeId>.md are the nodes' help pages


async def comfy_entrypoint():
    from .nodes import EthMumbaiExtension

    return EthMumbaiExtension()
