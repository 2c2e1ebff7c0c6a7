"""The node catalogue: ComfyUI 0.3.64's input specs for every node our pipeline uses (for /object_info and
validation), and which of them are output nodes. Combos that list model files or input images are filled
from the emulator's folders at request time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_RESOLUTION = 16384
MAX_SEED = 0xFFFFFFFFFFFFFFFF
SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = [
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
LATENT_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP = ["disabled", "center"]

# A combo whose options come from the server's folders: ("models", folder), ("vae_names",) or
# ("input_images",).
Dynamic = tuple[str, ...]
# VAELoader's names for the TAESD approximations, offered when vae_approx holds both halves of one.
TAESD = ("taesd", "taesdxl", "taesd3", "taef1")
Spec = tuple[Any, ...]  # (type or option list or Dynamic, options dict) or (type,)


@dataclass(frozen=True)
class NodeClass:
    name: str
    display_name: str | None
    category: str
    required: dict[str, Spec]
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] | None = None
    optional: dict[str, Spec] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)
    output_node: bool = False
    description: str = ""
    python_module: str = "nodes"
    schema: bool = False  # a comfy_api "schema" node: other /object_info shape, combos not validated
    deprecated: bool = False
    output_tooltips: tuple[str, ...] | None = None

    def input_specs(self) -> dict[str, Spec]:
        return {**self.required, **self.optional}


def _int(default: int, lo: int, hi: int, step: int | None = None, **extra: Any) -> Spec:
    opts: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        opts["step"] = step
    return ("INT", {**opts, **extra})


def _float(default: float, lo: float, hi: float, step: float, **extra: Any) -> Spec:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra})


SAVE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
SAMPLER_INPUTS: dict[str, Spec] = {
    "sampler_name": (
        SAMPLERS,
        {
            "tooltip": "The algorithm used when sampling, this can affect the quality, speed, "
            "and style of the generated output."
        },
    ),
    "scheduler": (
        SCHEDULERS,
        {"tooltip": "The scheduler controls how noise is gradually removed to form the image."},
    ),
}
CFG = _float(
    8.0,
    0.0,
    100.0,
    0.1,
    round=0.01,
    tooltip="The Classifier-Free Guidance scale balances creativity and "
    "adherence to the prompt. Higher values result in images more closely matching the prompt however too "
    "high values will negatively impact quality.",
)

LORA_DESCRIPTION = (
    "LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised "
    "such as applying styles. Multiple LoRA nodes can be linked together."
)

CATALOGUE: dict[str, NodeClass] = {
    n.name: n
    for n in [
        NodeClass(
            "CheckpointLoaderSimple",
            "Load Checkpoint",
            "loaders",
            {
                "ckpt_name": (
                    ("models", "checkpoints"),
                    {"tooltip": "The name of the checkpoint (model) to load."},
                )
            },
            ("MODEL", "CLIP", "VAE"),
            description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            output_tooltips=(
                "The model used for denoising latents.",
                "The CLIP model used for encoding text prompts.",
                "The VAE model used for encoding and decoding images to and from latent space.",
            ),
        ),
        NodeClass(
            "LoraLoader",
            "Load LoRA",
            "loaders",
            {
                "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
                "lora_name": (("models", "loras"), {"tooltip": "The name of the LoRA."}),
                "strength_model": _float(
                    1.0,
                    -100.0,
                    100.0,
                    0.01,
                    tooltip="How strongly to modify the diffusion model. This value can be negative.",
                ),
                "strength_clip": _float(
                    1.0,
                    -100.0,
                    100.0,
                    0.01,
                    tooltip="How strongly to modify the CLIP model. This value can be negative.",
                ),
            },
            ("MODEL", "CLIP"),
            description=LORA_DESCRIPTION,
            output_tooltips=("The modified diffusion model.", "The modified CLIP model."),
        ),
        NodeClass(
            "LoraLoaderModelOnly",
            None,
            "loaders",
            {
                "model": ("MODEL",),
                "lora_name": (("models", "loras"),),
                "strength_model": _float(1.0, -100.0, 100.0, 0.01),
            },
            ("MODEL",),
            description=LORA_DESCRIPTION,  # a subclass of LoraLoader: its description and tooltips
            output_tooltips=("The modified diffusion model.", "The modified CLIP model."),
        ),
        NodeClass(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            "conditioning",
            {
                "text": (
                    "STRING",
                    {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."},
                ),
                "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            },
            ("CONDITIONING",),
            description="Encodes a text prompt using a CLIP model into an embedding that can "
            "be used to guide the diffusion model towards generating specific images.",
            output_tooltips=(
                "A conditioning containing the embedded text used to guide the diffusion model.",
            ),
        ),
        NodeClass(
            "CLIPSetLastLayer",
            "CLIP Set Last Layer",
            "conditioning",
            {"clip": ("CLIP",), "stop_at_clip_layer": _int(-1, -24, -1, 1)},
            ("CLIP",),
        ),
        NodeClass(
            "EmptyLatentImage",
            "Empty Latent Image",
            "latent",
            {
                "width": _int(
                    512, 16, MAX_RESOLUTION, 8, tooltip="The width of the latent images in pixels."
                ),
                "height": _int(
                    512, 16, MAX_RESOLUTION, 8, tooltip="The height of the latent images in pixels."
                ),
                "batch_size": _int(1, 1, 4096, tooltip="The number of latent images in the batch."),
            },
            ("LATENT",),
            description="Create a new batch of empty latent images to be denoised via sampling.",
            output_tooltips=("The empty latent image batch.",),
        ),
        NodeClass(
            "KSampler",
            "KSampler",
            "sampling",
            {
                "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
                "seed": _int(
                    0,
                    0,
                    MAX_SEED,
                    control_after_generate=True,
                    tooltip="The random seed used for creating the noise.",
                ),
                "steps": _int(20, 1, 10000, tooltip="The number of steps used in the denoising process."),
                "cfg": CFG,
                **SAMPLER_INPUTS,
                "positive": (
                    "CONDITIONING",
                    {
                        "tooltip": "The conditioning describing the attributes you want to "
                        "include in the image."
                    },
                ),
                "negative": (
                    "CONDITIONING",
                    {
                        "tooltip": "The conditioning describing the attributes you want to "
                        "exclude from the image."
                    },
                ),
                "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
                "denoise": _float(
                    1.0,
                    0.0,
                    1.0,
                    0.01,
                    tooltip="The amount of denoising applied, lower values will "
                    "maintain the structure of the initial image allowing for image to image sampling.",
                ),
            },
            ("LATENT",),
            description="Uses the provided model, positive and negative conditioning to denoise the "
            "latent image.",
            output_tooltips=("The denoised latent.",),
        ),
        NodeClass(
            "KSamplerAdvanced",
            "KSampler (Advanced)",
            "sampling",
            {
                "model": ("MODEL",),
                "add_noise": (["enable", "disable"],),
                "noise_seed": _int(0, 0, MAX_SEED, control_after_generate=True),
                "steps": _int(20, 1, 10000),
                "cfg": _float(8.0, 0.0, 100.0, 0.1, round=0.01),
                "sampler_name": (SAMPLERS,),
                "scheduler": (SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "start_at_step": _int(0, 0, 10000),
                "end_at_step": _int(10000, 0, 10000),
                "return_with_leftover_noise": (["disable", "enable"],),
            },
            ("LATENT",),
        ),
        NodeClass(
            "VAEDecode",
            "VAE Decode",
            "latent",
            {
                "samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."}),
            },
            ("IMAGE",),
            description="Decodes latent images back into pixel space images.",
            output_tooltips=("The decoded image.",),
        ),
        NodeClass("VAEEncode", "VAE Encode", "latent", {"pixels": ("IMAGE",), "vae": ("VAE",)}, ("LATENT",)),
        NodeClass("VAELoader", "Load VAE", "loaders", {"vae_name": (("vae_names",),)}, ("VAE",)),
        NodeClass(
            "SaveImage",
            "Save Image",
            "image",
            {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save. "
                        "This may include formatting information such as %date:yyyy-MM-dd% or "
                        "%Empty Latent Image.width% to include values from nodes.",
                    },
                ),
            },
            hidden=SAVE_HIDDEN,
            output_node=True,
            description="Saves the input images to your ComfyUI output directory.",
        ),
        NodeClass(
            "PreviewImage",
            "Preview Image",
            "image",
            {"images": ("IMAGE",)},
            hidden=SAVE_HIDDEN,
            output_node=True,
            description="Saves the input images to your ComfyUI output directory.",
        ),
        NodeClass(
            "LoadImage",
            "Load Image",
            "image",
            {"image": (("input_images",), {"image_upload": True})},
            ("IMAGE", "MASK"),
        ),
        NodeClass("ImageInvert", "Invert Image", "image", {"image": ("IMAGE",)}, ("IMAGE",)),
        NodeClass(
            "ImageScale",
            "Upscale Image",
            "image/upscaling",
            {
                "image": ("IMAGE",),
                "upscale_method": (UPSCALE_METHODS,),
                "width": _int(512, 0, MAX_RESOLUTION, 1),
                "height": _int(512, 0, MAX_RESOLUTION, 1),
                "crop": (CROP,),
            },
            ("IMAGE",),
        ),
        NodeClass(
            "ImageScaleBy",
            "Upscale Image By",
            "image/upscaling",
            {
                "image": ("IMAGE",),
                "upscale_method": (UPSCALE_METHODS,),
                "scale_by": _float(1.0, 0.01, 8.0, 0.01),
            },
            ("IMAGE",),
        ),
        NodeClass(
            "LatentUpscale",
            "Upscale Latent",
            "latent",
            {
                "samples": ("LATENT",),
                "upscale_method": (LATENT_UPSCALE_METHODS,),
                "width": _int(512, 0, MAX_RESOLUTION, 8),
                "height": _int(512, 0, MAX_RESOLUTION, 8),
                "crop": (CROP,),
            },
            ("LATENT",),
        ),
        NodeClass(
            "LatentUpscaleBy",
            "Upscale Latent By",
            "latent",
            {
                "samples": ("LATENT",),
                "upscale_method": (LATENT_UPSCALE_METHODS,),
                "scale_by": _float(1.5, 0.01, 8.0, 0.01),
            },
            ("LATENT",),
        ),
        NodeClass(
            "ControlNetLoader",
            "Load ControlNet Model",
            "loaders",
            {"control_net_name": (("models", "controlnet"),)},
            ("CONTROL_NET",),
        ),
        NodeClass(
            "ControlNetApply",
            "Apply ControlNet (OLD)",
            "conditioning/controlnet",
            {
                "conditioning": ("CONDITIONING",),
                "control_net": ("CONTROL_NET",),
                "image": ("IMAGE",),
                "strength": _float(1.0, 0.0, 10.0, 0.01),
            },
            ("CONDITIONING",),
            deprecated=True,
        ),
        NodeClass(
            "ControlNetApplyAdvanced",
            "Apply ControlNet",
            "conditioning/controlnet",
            {
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "control_net": ("CONTROL_NET",),
                "image": ("IMAGE",),
                "strength": _float(1.0, 0.0, 10.0, 0.01),
                "start_percent": _float(0.0, 0.0, 1.0, 0.001),
                "end_percent": _float(1.0, 0.0, 1.0, 0.001),
            },
            ("CONDITIONING", "CONDITIONING"),
            output_names=("positive", "negative"),
            optional={"vae": ("VAE",)},
        ),
        NodeClass(
            "EmptyImage",
            "EmptyImage",
            "image",
            {
                "width": _int(512, 1, MAX_RESOLUTION, 1),
                "height": _int(512, 1, MAX_RESOLUTION, 1),
                "batch_size": _int(1, 1, 4096),
                "color": _int(0, 0, 0xFFFFFF, 1, display="color"),
            },
            ("IMAGE",),
        ),
        NodeClass(
            "Canny",
            None,
            "image/preprocessors",
            {
                "image": ("IMAGE", {}),
                "low_threshold": _float(0.4, 0.01, 0.99, 0.01),
                "high_threshold": _float(0.8, 0.01, 0.99, 0.01),
            },
            ("IMAGE",),
            python_module="comfy_extras.nodes_canny",
            schema=True,
        ),
        NodeClass(
            "CLIPVisionLoader",
            "Load CLIP Vision",
            "loaders",
            {"clip_name": (("models", "clip_vision"),)},
            ("CLIP_VISION",),
        ),
        NodeClass(
            "UpscaleModelLoader",
            "Load Upscale Model",
            "loaders",
            {"model_name": ("COMBO", {"multiselect": False, "options": ("models", "upscale_models")})},
            ("UPSCALE_MODEL",),
            python_module="comfy_extras.nodes_upscale_model",
            schema=True,
        ),
        NodeClass(
            "ImageUpscaleWithModel",
            "Upscale Image (using Model)",
            "image/upscaling",
            {"upscale_model": ("UPSCALE_MODEL", {}), "image": ("IMAGE", {})},
            ("IMAGE",),
            python_module="comfy_extras.nodes_upscale_model",
            schema=True,
        ),
    ]
}


def vae_names(vaes: list[str], approx: list[str]) -> list[str]:
    """VAELoader's choices as ComfyUI's `vae_list`: the vae folder, each complete TAESD pair, pixel_space."""

    def has(name: str, part: str) -> bool:
        return any(a.startswith(f"{name}_{part}.") for a in approx)

    return [*vaes, *(n for n in TAESD if has(n, "encoder") and has(n, "decoder")), "pixel_space"]


def resolve_options(spec: Spec, lister: Callable[[Dynamic], list[str]]) -> Spec:
    """Replace a dynamic combo (model folder / input images) by its current option list."""
    head = spec[0]
    if isinstance(head, tuple):
        return (lister(head), *spec[1:])
    if head == "COMBO" and len(spec) > 1 and isinstance(spec[1].get("options"), tuple):
        return ("COMBO", {**spec[1], "options": lister(spec[1]["options"])})
    return spec


def object_info(node: NodeClass, lister: Callable[[Dynamic], list[str]]) -> dict[str, Any]:
    """`/object_info/{class}`'s entry for one class, in ComfyUI's classic or schema shape."""

    def spec_json(spec: Spec) -> list[Any]:
        resolved = resolve_options(spec, lister)
        return [resolved[0], *resolved[1:]]

    inputs: dict[str, Any] = {"required": {k: spec_json(v) for k, v in node.required.items()}}
    order: dict[str, list[str]] = {"required": list(node.required)}
    if node.optional:
        inputs["optional"] = {k: spec_json(v) for k, v in node.optional.items()}
        order["optional"] = list(node.optional)
    if node.hidden:
        inputs["hidden"] = dict(node.hidden)
        order["hidden"] = list(node.hidden)
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": order,
        "output": list(node.outputs),
        "output_is_list": [False] * len(node.outputs),
        "output_name": list(node.output_names or node.outputs),
        "name": node.name,
        "display_name": node.display_name if node.schema or node.display_name else node.name,
        "description": node.description,
        "python_module": node.python_module,
        "category": node.category,
        "output_node": node.output_node,
    }
    if node.schema:
        info.update(
            output_tooltips=[None] * len(node.outputs), deprecated=False, experimental=False, api_node=False
        )
    else:
        if node.deprecated:
            info["deprecated"] = True
        if node.output_tooltips:
            info["output_tooltips"] = list(node.output_tooltips)
    return info
