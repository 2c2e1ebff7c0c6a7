"""The render contract: what every tier agrees on to turn a job into images.

- `graphs`: the API-format graphs (`workflows/*.json`), their node ids and how a job fills them in;
- `styles`: the style manifest reader (the data is `loras/styles.toml`);
- `comfy_client`: the ComfyUI 0.3.64 protocol, as the backend and the SageMaker adapter speak it;
- `files`: streaming SHA-256 (how the manifest pins a model file) and atomic writes.

The backend, the ML server (emulator, model sync, SageMaker container) and the LoRA pipeline import it;
it imports none of them (import-linter checks it), so the SageMaker image copies this package whole.
"""
