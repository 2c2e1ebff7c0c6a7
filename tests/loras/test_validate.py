"""validate.py accepts a well-formed kohya SD 1.5 LoRA and names each defect it must stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loras.sd15_lora import modules_in, sd15_modules
from loras.validate import LoraReport, main, validate_lora
from tests.loras.lora_factory import (
    kohya_metadata,
    lora_tensors,
    read_header_json,
    rewrite_header,
    write_lora,
)

ATTN2_K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
TE_FC1 = "lora_te_text_model_encoder_layers_0_mlp_fc1"


def codes(report: LoraReport) -> set[str]:
    return {f.code for f in report.errors}


# --- the SD 1.5 table the validator and the fixtures share, checked against independent facts ---------


def test_module_table_has_kohyas_counts() -> None:
    # sd-scripts logs "create LoRA for U-Net: 192 modules." / "Text Encoder: 72 modules."; conv_dim adds 86.
    assert len(modules_in("unet")) == 192
    assert len(modules_in("te")) == 72
    assert len(modules_in("unet_conv")) == 86
    assert sum(m.in_features + m.out_features for m in modules_in("unet")) == 423_936
    assert sum(m.in_features + m.out_features for m in modules_in("te")) == 165_888


@pytest.mark.parametrize(
    ("name", "in_features", "out_features", "kernel"),
    [
        (ATTN2_K, 768, 320, 0),  # cross-attention keys come from CLIP's 768
        ("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj", 1280, 10240, 0),  # GEGLU 8c
        ("lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2", 1280, 320, 0),  # 4c -> c
        ("lora_unet_down_blocks_1_attentions_1_proj_in", 640, 640, 1),
        (TE_FC1, 768, 3072, 0),
        ("lora_unet_up_blocks_1_resnets_2_conv1", 1920, 1280, 3),  # 1280 + 640 skip
        ("lora_unet_up_blocks_0_resnets_0_conv_shortcut", 2560, 1280, 1),
        ("lora_unet_down_blocks_2_resnets_0_time_emb_proj", 1280, 1280, 0),
        ("lora_unet_up_blocks_2_upsamplers_0_conv", 640, 640, 3),
    ],
)
def test_module_table_knows_sd15_layer_sizes(
    name: str, in_features: int, out_features: int, kernel: int
) -> None:
    spec = sd15_modules()[name]
    assert (spec.in_features, spec.out_features, spec.kernel) == (in_features, out_features, kernel)


# --- accepted ---------------------------------------------------------------------------------------------


def test_a_well_formed_lora_passes(good_lora: Path) -> None:
    report = validate_lora(good_lora)
    assert report.ok, report.summary()
    assert not report.warnings
    assert (report.layout, report.modules, report.tensors) == ("U-Net + text encoder", 264, 792)
    assert (report.rank, report.alpha, report.dtype) == (1, 1.0, "F16")
    assert report.size_bytes == good_lora.stat().st_size and len(report.sha256) == 64


def test_unet_only_with_conv_modules_passes(tmp_path: Path) -> None:
    tensors = lora_tensors(rank=2, groups=("unet", "unet_conv"), alpha=1.0, conv_rank=1, dtype=torch.float32)
    meta = kohya_metadata(rank=2, ss_network_args=json.dumps({"conv_dim": "1", "conv_alpha": "1"}))
    report = validate_lora(write_lora(tmp_path / "u.safetensors", tensors, meta))
    assert report.ok, report.summary()
    assert (report.layout, report.modules, report.rank, report.conv_rank) == ("U-Net + conv", 278, 2, 1)


def test_a_file_without_metadata_passes_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bare.safetensors"
    from safetensors.torch import save_file

    save_file(lora_tensors(groups=("unet",)), str(path))
    report = validate_lora(path)
    assert report.ok
    assert [w.code for w in report.warnings] == ["no_metadata"]


# --- rejected: one defect each ----------------------------------------------------------------------------


def _with(tmp_path: Path, mutate, metadata: dict[str, str] | None = None) -> LoraReport:
    tensors = lora_tensors()
    mutate(tensors)
    return validate_lora(write_lora(tmp_path / "bad.safetensors", tensors, metadata))


def test_sdxl_text_encoder_keys_are_rejected(tmp_path: Path) -> None:
    def rename(t):
        for part in ("lora_down.weight", "lora_up.weight", "alpha"):
            t[f"lora_te1_text_model_encoder_layers_0_mlp_fc1.{part}"] = t.pop(f"{TE_FC1}.{part}")

    report = _with(tmp_path, rename)
    assert {"sdxl_keys", "missing_modules"} <= codes(report)
    assert "lora_te1_" in report.summary()


def test_peft_keys_are_rejected(tmp_path: Path) -> None:
    def peft(t):
        t["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"] = t.pop(
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"
        )

    assert "peft_keys" in codes(_with(tmp_path, peft))


def test_a_misspelt_module_is_rejected_because_comfyui_would_ignore_it(tmp_path: Path) -> None:
    def typo(t):
        for part in ("lora_down.weight", "lora_up.weight", "alpha"):
            t[f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_kk.{part}"] = t.pop(
                f"{ATTN2_K}.{part}"
            )

    report = _with(tmp_path, typo)
    assert {"unknown_modules", "missing_modules"} <= codes(report)
    assert "lora key not loaded" in report.summary()


def test_a_missing_lora_up_is_rejected(tmp_path: Path) -> None:
    report = _with(tmp_path, lambda t: t.pop(f"{ATTN2_K}.lora_up.weight"))
    assert "incomplete_modules" in codes(report)


def test_nan_is_rejected(tmp_path: Path) -> None:
    def nan(t):
        t[f"{ATTN2_K}.lora_up.weight"][0, 0] = float("nan")

    report = _with(tmp_path, nan)
    assert codes(report) == {"non_finite"}
    assert f"{ATTN2_K}.lora_up.weight" in report.summary()


def test_inf_is_rejected(tmp_path: Path) -> None:
    def inf(t):
        t[f"{TE_FC1}.lora_down.weight"][0, 3] = float("inf")

    assert codes(_with(tmp_path, inf)) == {"non_finite"}


def test_mixed_ranks_are_rejected(tmp_path: Path) -> None:
    def rank2(t):
        spec = sd15_modules()[ATTN2_K]
        t[f"{ATTN2_K}.lora_down.weight"] = torch.full(spec.down_shape(2), 0.01, dtype=torch.float16)
        t[f"{ATTN2_K}.lora_up.weight"] = torch.full(spec.up_shape(2), 0.01, dtype=torch.float16)

    report = _with(tmp_path, rank2)
    assert codes(report) == {"mixed_ranks"}
    assert "rank 1: 263 modules, rank 2: 1 modules" in report.summary()


def test_a_shape_that_does_not_fit_the_sd15_layer_is_rejected(tmp_path: Path) -> None:
    def sdxl_like(t):  # attn2.to_k of SDXL reads 2048-wide text embeddings
        t[f"{ATTN2_K}.lora_down.weight"] = torch.full((1, 2048), 0.01, dtype=torch.float16)

    report = _with(tmp_path, sdxl_like)
    assert "wrong_shapes" in codes(report)
    assert "expected (1, 768)" in report.summary()


def test_an_untrained_lora_is_rejected(tmp_path: Path) -> None:
    def zeros(t):
        for key in t:
            if key.endswith("lora_up.weight"):
                t[key].zero_()

    assert codes(_with(tmp_path, zeros)) == {"untrained"}


def test_a_truncated_file_is_rejected(good_lora: Path) -> None:
    data = good_lora.read_bytes()
    good_lora.write_bytes(data[: len(data) // 2])
    report = validate_lora(good_lora)
    assert codes(report) == {"truncated"}
    assert "interrupted upload" in report.summary()


def test_a_file_cut_inside_its_header_is_rejected(good_lora: Path) -> None:
    good_lora.write_bytes(good_lora.read_bytes()[:100])
    assert codes(validate_lora(good_lora)) == {"not_safetensors"}


def test_a_pickle_checkpoint_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(4)}, path)
    assert codes(validate_lora(path)) == {"not_safetensors"}


def test_trailing_bytes_are_rejected(good_lora: Path) -> None:
    with good_lora.open("ab") as f:
        f.write(b"\0" * 16)
    assert codes(validate_lora(good_lora)) == {"trailing_bytes"}


def test_non_string_metadata_is_rejected(good_lora: Path) -> None:
    header = read_header_json(good_lora)
    header["__metadata__"] = {"ss_network_dim": 1}
    rewrite_header(good_lora, header)
    assert codes(validate_lora(good_lora)) == {"bad_metadata"}


def test_metadata_that_contradicts_the_tensors_is_rejected(tmp_path: Path) -> None:
    report = _with(tmp_path, lambda t: None, kohya_metadata(rank=32, alpha=16.0))
    assert codes(report) == {"dim_mismatch", "alpha_mismatch"}


@pytest.mark.parametrize(
    "override",
    [
        {"ss_base_model_version": "sdxl_base_v1-0"},
        {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"},
        {"ss_v2": "True"},
    ],
)
def test_another_base_model_is_rejected(tmp_path: Path, override: dict[str, str]) -> None:
    assert codes(_with(tmp_path, lambda t: None, kohya_metadata(**override))) == {"wrong_base_model"}


def test_a_default_network_dim_means_rank_4(tmp_path: Path) -> None:
    meta = kohya_metadata(ss_network_dim="None")  # sd-scripts writes "None" when --network_dim was not given
    assert codes(_with(tmp_path, lambda t: None, meta)) == {"dim_mismatch"}
    del meta["ss_network_dim"]  # absent (another tool): nothing to compare
    assert codes(_with(tmp_path, lambda t: None, meta)) == set()


def test_tensors_changed_after_training_break_the_recorded_hash(tmp_path: Path, good_lora: Path) -> None:
    meta = read_header_json(good_lora)["__metadata__"]
    tensors = lora_tensors(seed=1)  # different weights, same metadata (and so the old sshs_model_hash)
    path = write_lora(tmp_path / "edited.safetensors", tensors, dict(meta), with_hash=False)
    assert codes(validate_lora(path)) == {"hash_mismatch"}


def test_an_oversized_file_is_rejected(good_lora: Path) -> None:
    assert codes(validate_lora(good_lora, max_size_bytes=1024)) == {"too_large"}


def test_a_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    assert codes(validate_lora(tmp_path / "nope.safetensors")) == {"unreadable"}


# --- command line -----------------------------------------------------------------------------------------


def test_cli_exits_0_for_a_good_file_and_1_for_a_bad_one(good_lora: Path, tmp_path: Path, capsys) -> None:
    assert main([str(good_lora)]) == 0
    assert capsys.readouterr().out.startswith("OK ")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good_lora.read_bytes()[:-10])
    assert main([str(good_lora), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "[truncated]" in out


def test_cli_json_report(good_lora: Path, capsys) -> None:
    assert main(["--json", str(good_lora)]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["modules"] == 264 and report["metadata"]["ss_network_dim"] == "1"


def test_cli_strict_fails_on_warnings(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file(lora_tensors(groups=("unet",)), str(path))
    assert main([str(path)]) == 0
    assert main(["--strict", str(path)]) == 1
