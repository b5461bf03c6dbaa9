"""Pure image functions behind the ETHMumbai nodes (numpy/torch/PIL/OpenCV; no ComfyUI imports).

Every node in ``nodes/`` declares its interface and calls exactly one public function here, so
the behaviour can be tested and benchmarked without a ComfyUI server.
"""
