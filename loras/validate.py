"""Check a trained LoRA before it ships: is it a complete kohya SD 1.5 `networks.lora` file ComfyUI applies?

Checks, cheapest first: the safetensors header (truncation, trailing bytes, offsets); key names
(`lora_unet_*` / `lora_te_*` with `lora_down.weight`, `lora_up.weight`, `alpha`; SDXL, PEFT and LyCORIS
keys named as such); the module set (192 U-Net modules, optionally the 86 conv modules and/or the 72
text-encoder ones: `sd15_lora.py`); every shape against the SD 1.5 layer it patches; one rank (and one
conv rank); alphas; no NaN/Inf and not untrained (all `lora_up` zero); the training metadata against
the tensors; dtype; size. A name ComfyUI does not know is only logged there ("lora key not loaded"), so
it is an error here.

    python -m loras.validate output/indochine_v2.safetensors [--json] [--strict]

prints a report per file and exits 1 when any file has an error (or a warning, with --strict).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open

from contract.files import CHUNK_BYTES
from loras.cli import configure_logging, description, write_out
from loras.safetensors_header import Header, HeaderError, check_data_section, read_header
from loras.sd15_lora import GROUP_SIZES, sd15_modules

MAX_SIZE_BYTES = 512 * 1024 * 1024  # rank 128, fp32, U-Net + text encoder is ~290 MiB
LARGE_RANK = 128
ALPHA_RTOL = 1e-3  # alphas are stored in the save dtype (fp16 for save_precision fp16)
ALLOWED_DTYPES = ("F16", "BF16", "F32")
EXAMPLES = 3
PARTS = ("lora_down.weight", "lora_up.weight", "alpha")
KEY_RE = re.compile(r"^(lora_unet|lora_te)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")
FOREIGN_KEYS = (
    (re.compile(r"^lora_te[12]_"), "sdxl_keys", "SDXL text-encoder keys (lora_te1_/lora_te2_): an SDXL LoRA"),
    (re.compile(r"\.lora_[AB]\.|^(unet|text_encoder|base_model)\."), "peft_keys", "diffusers/PEFT keys"),
    (re.compile(r"\.(hada_|lokr_|lora_mid\.)"), "lycoris_keys", "LyCORIS (LoHa/LoKr) keys"),
)
Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str
    message: str


@dataclass(frozen=True)
class LoraReport:
    """What validate_lora found; `ok` means no error (warnings allowed)."""

    path: str
    size_bytes: int
    sha256: str
    findings: tuple[Finding, ...]
    layout: str = ""
    modules: int = 0
    tensors: int = 0
    rank: int | None = None
    conv_rank: int | None = None
    alpha: float | None = None
    dtype: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["metadata"] = {k: v for k, v in self.metadata.items() if k in SUMMARY_METADATA}
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        """Human-readable report: a verdict line, what the file is, then one line per finding."""
        verdict = "OK  " if self.ok else "FAIL"
        lines = [f"{verdict} {self.path} ({len(self.errors)} errors, {len(self.warnings)} warnings)"]
        lines.append(f"  {self.size_bytes / 2**20:.1f} MiB, sha256 {self.sha256}")
        if self.layout:
            conv = f", conv rank {self.conv_rank}" if self.conv_rank else ""
            lines.append(
                f"  kohya SD1.5 LoRA, {self.layout}: {self.modules} modules ({self.tensors} tensors), "
                f"rank {self.rank}{conv}, alpha {self.alpha}, {self.dtype}"
            )
        lines += [f"  {f.level}: [{f.code}] {f.message}" for f in self.findings]
        return "\n".join(lines)


SUMMARY_METADATA = (
    "ss_output_name",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_base_model_version",
    "ss_epoch",
)


def _examples(items: Sequence[str]) -> str:
    more = f" (+{len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return ", ".join(items[:EXAMPLES]) + more


def _hashes(path: Path, data_start: int) -> tuple[str, str]:
    """SHA-256 of the whole file (the publish checksum) and of the tensor bytes (kohya's sshs_model_hash)."""
    whole, data = hashlib.sha256(), hashlib.sha256()
    with path.open("rb") as f:
        head = f.read(data_start)
        whole.update(head)
        while chunk := f.read(CHUNK_BYTES):
            whole.update(chunk)
            data.update(chunk)
    return whole.hexdigest(), data.hexdigest()


# --- keys and module set ----------------------------------------------------------------------------------


def _foreign_key_findings(bad: list[str]) -> list[Finding]:
    findings, rest = [], list(bad)
    for pattern, code, what in FOREIGN_KEYS:
        hits = [k for k in rest if pattern.search(k)]
        if hits:
            findings.append(Finding("error", code, f"{len(hits)} {what}, not kohya SD1.5: {_examples(hits)}"))
            rest = [k for k in rest if k not in hits]
    if rest:
        msg = f"{len(rest)} keys are not lora_unet_*/lora_te_* .lora_down/.lora_up/.alpha: {_examples(rest)}"
        findings.append(Finding("error", "bad_keys", msg))
    return findings


def group_keys(keys: Iterable[str]) -> tuple[dict[str, dict[str, str]], list[Finding]]:
    """Module name -> {part: key} for kohya-style keys; findings for every other key."""
    modules: dict[str, dict[str, str]] = {}
    bad: list[str] = []
    for key in sorted(keys):
        if not KEY_RE.match(key):
            bad.append(key)
            continue
        name, _, part = key.partition(".")
        modules.setdefault(name, {})[part] = key
    return modules, _foreign_key_findings(bad)


def _incomplete(modules: dict[str, dict[str, str]]) -> list[Finding]:
    findings = []
    broken = [n for n, parts in modules.items() if not {"lora_down.weight", "lora_up.weight"} <= parts.keys()]
    if broken:
        msg = f"{len(broken)} modules lack lora_down.weight or lora_up.weight: {_examples(broken)}"
        findings.append(Finding("error", "incomplete_modules", msg))
    no_alpha = [n for n, parts in modules.items() if "alpha" not in parts]
    if no_alpha:
        msg = f"{len(no_alpha)} modules have no alpha (kohya always writes one; ComfyUI would use scale 1)"
        findings.append(Finding("warning", "missing_alpha", f"{msg}: {_examples(no_alpha)}"))
    return findings


def check_module_set(names: set[str]) -> tuple[str, list[Finding]]:
    """The layout ("U-Net + text encoder", ...) and findings for unknown or missing modules."""
    spec = sd15_modules()
    findings = []
    unknown = sorted(names - spec.keys())
    if unknown:
        msg = f"{len(unknown)} modules are not SD 1.5 layers; ComfyUI would skip them (lora key not loaded)"
        findings.append(Finding("error", "unknown_modules", f"{msg}: {_examples(unknown)}"))
    present = {g: sorted(n for n in names if n in spec and spec[n].group == g) for g in GROUP_SIZES}
    for group, expected in GROUP_SIZES.items():
        have = present[group]
        if (have or group == "unet") and len(have) != expected:
            missing = sorted(n for n, m in spec.items() if m.group == group and n not in names)
            msg = f"{group}: {len(have)} of {expected} modules; missing {_examples(missing)}"
            findings.append(Finding("error", "missing_modules", msg))
    layout = " + ".join(
        label
        for group, label in (("unet", "U-Net"), ("unet_conv", "conv"), ("te", "text encoder"))
        if present[group]
    )
    return layout, findings


# --- shapes and ranks -------------------------------------------------------------------------------------


def check_shapes(modules: dict[str, dict[str, str]], header: Header) -> tuple[dict[str, int], list[Finding]]:
    """Each known module's rank, and findings for shapes that do not fit the SD 1.5 layer."""
    spec, ranks, wrong = sd15_modules(), {}, []
    for name, parts in modules.items():
        if name not in spec or not {"lora_down.weight", "lora_up.weight"} <= parts.keys():
            continue
        down = header.tensors[parts["lora_down.weight"]].shape
        up = header.tensors[parts["lora_up.weight"]].shape
        rank = down[0] if down else 0
        alpha = header.tensors[parts["alpha"]].shape if "alpha" in parts else ()
        if down != spec[name].down_shape(rank) or up != spec[name].up_shape(rank) or alpha not in ((), (1,)):
            want = f"{spec[name].down_shape(rank)}/{spec[name].up_shape(rank)}"
            wrong.append(f"{name} down {down} up {up} (expected {want})")
        else:
            ranks[name] = rank
    if not wrong:
        return ranks, []
    return ranks, [Finding("error", "wrong_shapes", f"{len(wrong)} modules: {_examples(wrong)}")]


def _one_rank(ranks: dict[str, int], what: str) -> tuple[int | None, list[Finding]]:
    counts = Counter(ranks.values())
    if not counts:
        return None, []
    rank = counts.most_common(1)[0][0]
    findings = []
    if len(counts) > 1:
        odd = [f"{n} (rank {r})" for n, r in ranks.items() if r != rank]
        spread = ", ".join(f"rank {r}: {c} modules" for r, c in counts.most_common())
        findings.append(Finding("error", "mixed_ranks", f"{what} ranks differ ({spread}): {_examples(odd)}"))
    if rank <= 0:
        findings.append(Finding("error", "zero_rank", f"{what} rank is {rank}"))
    elif rank > LARGE_RANK:
        findings.append(
            Finding("warning", "large_rank", f"{what} rank {rank} is unusually large for a style")
        )
    return rank, findings


def check_ranks(ranks: dict[str, int]) -> tuple[int | None, int | None, list[Finding]]:
    """One rank for Linear/1×1 modules (network_dim), one for 3×3 convs (conv_dim)."""
    spec = sd15_modules()
    rank, f1 = _one_rank({n: r for n, r in ranks.items() if not spec[n].is_conv3x3}, "module")
    conv_rank, f2 = _one_rank({n: r for n, r in ranks.items() if spec[n].is_conv3x3}, "3x3 conv")
    return rank, conv_rank, f1 + f2


# --- values -----------------------------------------------------------------------------------------------


@dataclass
class ValueScan:
    non_finite: list[str] = field(default_factory=list)
    zero_up: list[str] = field(default_factory=list)
    alphas: dict[str, float] = field(default_factory=dict)


def scan_values(path: Path, modules: dict[str, dict[str, str]]) -> ValueScan:
    """Load every tensor once: NaN/Inf anywhere, all-zero lora_up (never trained), alpha values."""
    scan = ValueScan()
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():
            tensor = f.get_tensor(key).float()
            if not bool(torch.isfinite(tensor).all()):
                scan.non_finite.append(key)
            name, _, part = key.partition(".")
            if name not in modules:
                continue
            if part == "lora_up.weight" and not bool(tensor.any()):
                scan.zero_up.append(name)
            elif part == "alpha" and tensor.numel() == 1:
                scan.alphas[name] = float(tensor.reshape(()).item())
    return scan


def value_findings(scan: ValueScan, module_count: int) -> list[Finding]:
    findings = []
    if scan.non_finite:
        msg = f"{len(scan.non_finite)} tensors hold NaN or Inf: {_examples(scan.non_finite)}"
        findings.append(Finding("error", "non_finite", msg))
    if scan.zero_up and len(scan.zero_up) == module_count:
        findings.append(Finding("error", "untrained", "every lora_up is all zeros: the LoRA changes nothing"))
    elif scan.zero_up:
        msg = f"{len(scan.zero_up)} modules have an all-zero lora_up: {_examples(scan.zero_up)}"
        findings.append(Finding("warning", "zero_modules", msg))
    bad_alpha = [n for n, a in scan.alphas.items() if not a > 0]
    if bad_alpha:
        findings.append(Finding("error", "bad_alpha", f"alpha must be > 0: {_examples(bad_alpha)}"))
    return findings


def _alpha_of(scan: ValueScan, conv: bool) -> tuple[float | None, list[Finding]]:
    spec = sd15_modules()
    values = Counter(round(a, 4) for n, a in scan.alphas.items() if n in spec and spec[n].is_conv3x3 == conv)
    if not values:
        return None, []
    alpha = values.most_common(1)[0][0]
    if len(values) == 1:
        return alpha, []
    what = "3x3 conv" if conv else "module"
    spread = ", ".join(f"{a:g} ({c})" for a, c in values.most_common())
    return alpha, [Finding("warning", "mixed_alpha", f"{what} alphas differ: {spread}")]


# --- metadata ---------------------------------------------------------------------------------------------


def _number(text: str | None, if_none: float | None = None) -> float | None:
    """A metadata number; `if_none` when sd-scripts wrote "None" (the option's default was used)."""
    if text is None:
        return None
    if text == "None":
        return if_none
    try:
        return float(text)
    except ValueError:
        return None


def _network_args(meta: dict[str, str]) -> dict[str, str]:
    try:
        args = json.loads(meta.get("ss_network_args", "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {}


def _model_findings(meta: dict[str, str]) -> list[Finding]:
    findings = []
    module = meta.get("ss_network_module")
    if module is not None and module != "networks.lora":
        findings.append(
            Finding("error", "wrong_network", f"ss_network_module is {module!r}, not networks.lora")
        )
    base = meta.get("ss_base_model_version")
    arch = meta.get("modelspec.architecture")
    if (
        (base and not base.startswith("sd_v1"))
        or meta.get("ss_v2") == "True"
        or (arch and not arch.startswith("stable-diffusion-v1"))
    ):
        what = base or arch or "SD 2.x"
        findings.append(Finding("error", "wrong_base_model", f"trained on {what}, not SD 1.5"))
    return findings


@dataclass(frozen=True)
class Trained:
    """What the tensors say; compared with what the metadata says."""

    rank: int | None
    conv_rank: int | None
    alpha: float | None
    conv_alpha: float | None


def _mismatch(code: str, what: str, meta_value: float | None, actual: float | None) -> list[Finding]:
    if meta_value is None or actual is None or abs(meta_value - actual) <= ALPHA_RTOL * max(1.0, actual):
        return []
    return [Finding("error", code, f"metadata says {what} {meta_value:g}, the tensors {actual:g}")]


def check_metadata(meta: dict[str, str] | None, trained: Trained, data_sha256: str) -> list[Finding]:
    if meta is None:
        return [
            Finding("warning", "no_metadata", "no __metadata__: not written by sd-scripts, or --no_metadata")
        ]
    args = _network_args(meta)
    findings = _model_findings(meta)
    default_dim = 4  # networks.lora's rank when --network_dim is not given (metadata then says "None")
    findings += _mismatch(
        "dim_mismatch", "network_dim", _number(meta.get("ss_network_dim"), default_dim), trained.rank
    )
    findings += _mismatch(
        "alpha_mismatch", "network_alpha", _number(meta.get("ss_network_alpha")), trained.alpha
    )
    findings += _mismatch("dim_mismatch", "conv_dim", _number(args.get("conv_dim")), trained.conv_rank)
    findings += _mismatch("alpha_mismatch", "conv_alpha", _number(args.get("conv_alpha")), trained.conv_alpha)
    recorded = meta.get("sshs_model_hash")
    if recorded and recorded.lower() != data_sha256:
        msg = "sshs_model_hash does not match the tensor bytes: the file changed after training"
        findings.append(Finding("error", "hash_mismatch", msg))
    return findings


def check_dtypes(header: Header) -> tuple[str, list[Finding]]:
    counts = Counter(t.dtype for t in header.tensors.values())
    if not counts:
        return "", []
    dtype = counts.most_common(1)[0][0]
    findings = [
        Finding("error", "bad_dtype", f"{d} tensors ({c})")
        for d, c in counts.items()
        if d not in ALLOWED_DTYPES
    ]
    if len(counts) > 1:
        spread = ", ".join(f"{d}: {c}" for d, c in counts.most_common())
        findings.append(Finding("warning", "mixed_dtypes", f"tensors of several dtypes ({spread})"))
    return dtype, findings


# --- the whole check --------------------------------------------------------------------------------------


def _structure(path: Path, max_size_bytes: int) -> tuple[Header | None, list[Finding]]:
    size = path.stat().st_size
    if size > max_size_bytes:
        msg = (
            f"{size / 2**20:.1f} MiB is over the {max_size_bytes / 2**20:.0f} MiB limit (a full checkpoint?)"
        )
        return None, [Finding("error", "too_large", msg)]
    try:
        header = read_header(path)
        check_data_section(header)
    except HeaderError as exc:
        return None, [Finding("error", exc.code, str(exc))]
    if not header.tensors:
        return None, [Finding("error", "empty", "the file holds no tensors")]
    return header, []


def _check_tensors(path: Path, header: Header, findings: list[Finding]) -> LoraReport:
    sha256, data_sha256 = _hashes(path, header.data_start)
    modules, key_findings = group_keys(header.tensors)
    layout, set_findings = check_module_set(set(modules))
    ranks, shape_findings = check_shapes(modules, header)
    rank, conv_rank, rank_findings = check_ranks(ranks)
    dtype, dtype_findings = check_dtypes(header)
    try:
        scan = scan_values(path, modules)
    except (SafetensorError, OSError, RuntimeError) as exc:  # what the header check could not see
        findings.append(Finding("error", "unreadable", f"safetensors cannot load it: {exc}"))
        scan = ValueScan()
    alpha, a1 = _alpha_of(scan, conv=False)
    conv_alpha, a2 = _alpha_of(scan, conv=True)
    trained = Trained(rank, conv_rank, alpha, conv_alpha)
    findings += key_findings + _incomplete(modules) + set_findings + shape_findings + rank_findings
    findings += dtype_findings + value_findings(scan, len(modules)) + a1 + a2
    findings += check_metadata(header.metadata, trained, data_sha256)
    return LoraReport(
        str(path), path.stat().st_size, sha256, tuple(findings), layout, len(modules),
        len(header.tensors), rank, conv_rank, alpha, dtype, dict(header.metadata or {}),
    )  # fmt: skip


def validate_lora(path: Path, max_size_bytes: int = MAX_SIZE_BYTES) -> LoraReport:
    """Every check on one file; never raises for a bad file (the report says what is wrong)."""
    try:
        header, findings = _structure(path, max_size_bytes)
    except OSError as exc:
        return LoraReport(str(path), 0, "", (Finding("error", "unreadable", str(exc)),))
    if header is None:
        return LoraReport(str(path), path.stat().st_size, _hashes(path, 0)[0], tuple(findings))
    return _check_tensors(path, header, findings)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loras.validate", description=description(__doc__))
    p.add_argument("files", nargs="+", type=Path, help="LoRA .safetensors files")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument(
        "--max-size-mb", type=float, default=MAX_SIZE_BYTES / 2**20, help="largest acceptable file"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    reports = [validate_lora(f, int(args.max_size_mb * 2**20)) for f in args.files]
    if args.json:
        write_out(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        write_out("\n".join(r.summary() for r in reports))
    failed = [r for r in reports if not r.ok or (args.strict and r.warnings)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
