"""The SageMaker asynchronous-inference container: an HTTP adapter (`/ping`, `/invocations`) in front of one
local ComfyUI, its Dockerfile and the `serve` entrypoint. The payload contract is in README.md."""
