"""Tiny random SDXL-shaped models and the ComfyUI plugin that loads them: tests, benchmarks and ``make run``'s demo."""
