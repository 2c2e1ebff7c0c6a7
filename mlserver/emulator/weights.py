"""What ComfyUI does to a model file before it has a model: the loader node ends the prompt with an
execution_error when safetensors refuses the file's header (reference §4.6).

The checks themselves live in `contract.weights`, shared with the backend, which checks a model a lead adds
with the same code. Pickle formats (`.ckpt`, `.pt`) are not checked: ComfyUI hands those to torch.load,
which the emulator does not imitate.
"""

from __future__ import annotations

from contract.weights import SafetensorError, check_safetensors, check_weights

__all__ = ["SafetensorError", "check_safetensors", "check_weights"]
