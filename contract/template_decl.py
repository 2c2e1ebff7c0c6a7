"""A template's declaration (DESIGN-templates §1): the pydantic models a lead's upload is read into.

`parse_declaration(doc)` reads a parsed JSON document (after `check_json_text` when it comes as bytes) and
raises `DeclarationError` with one `{"field", "message"}` per fault, `field` a dotted path
(`inputs.2.constraints.max`). Names, titles, labels and help are plain text: markup is kept as it is
(whoever shows it escapes it), control characters are refused. What needs the graph or an instance's
`/object_info` (targets, narrowing, types) is judged by `template_inputs.check_inputs`, not here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_NODES = 1000
MAX_GRAPH_BYTES = 2 * 1024 * 1024
MAX_JSON_DEPTH = 32  # a declaration needs about 8 (doc → graph → node → inputs → value → list)
MAX_INPUTS = 60
MAX_TARGETS = 16
MAX_CHOICES = 500
MAX_OUTPUTS = 32
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,39}$"
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
FOLDER_PATTERN = r"^[a-z0-9_]{1,40}$"
# The upload roles (backend.models.UploadRole, which a test holds equal): what an image input may require.
UploadRoleName = Literal["sketch", "product", "style_photo", "composition", "photo", "mask"]
InputKind = Literal[
    "short_text", "long_text", "integer", "number", "choice", "seed", "image", "style", "model"
]
# Every C0/C1 control character; tab and newline are allowed where a text may span lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class DeclarationError(ValueError):
    """The declaration is malformed; `errors` = [{"field": "inputs.0.key", "message": "..."}]."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]))


def a(word: str) -> str:
    """`an integer`, `a seed`, `an INT`: the article a message needs."""
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _one_line(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("must not contain control characters (one line of plain text)")
    if not v.strip():
        raise ValueError("must not be empty or only spaces")
    return v.strip()


def _multiline(v: str) -> str:
    if _CONTROL_MULTILINE.search(v):
        raise ValueError("must not contain control characters")
    return v


Title = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_one_line)]
Label = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_one_line)]
Help = Annotated[str, Field(max_length=300), AfterValidator(_multiline)]
Description = Annotated[str, Field(max_length=2000), AfterValidator(_multiline)]
NodeId = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_one_line)]
InputName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_one_line)]
Target = tuple[NodeId, InputName]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constraints(_Strict):
    """Narrowing of the target's spec: a form's limits. Each is optional; each may only narrow."""

    min: float | None = None
    max: float | None = None
    step: float | None = Field(None, gt=0)
    choices: list[str | int | float] | None = Field(None, min_length=1, max_length=MAX_CHOICES)
    max_length: int | None = Field(None, ge=1, le=100_000)
    min_width: int | None = Field(None, ge=1, le=16384)
    min_height: int | None = Field(None, ge=1, le=16384)

    @model_validator(mode="after")
    def _ordered(self) -> Constraints:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.choices is not None and len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError("choices must not repeat")
        return self


class StyleBlock(_Strict):
    """Where a style input acts: the prompts it wraps, the LoRA node it fills or bypasses."""

    lora_node: NodeId | None = None
    positive: Target | None = None
    negative: Target | None = None
    strength_input: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None


class LineArt(_Strict):
    invert_node: NodeId


class UploadBlock(_Strict):
    """What an image input's upload must be (checked at job creation): its upload role and, for a mask,
    the image input it masks (same width and height) and whether an empty or a full mask is refused."""

    role: Annotated[str, Field(pattern=KEY_PATTERN)]
    mask_of: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None
    refuse_empty: bool = False
    refuse_full: bool = False
    # Not given: the target reads this image input's file instead (a photo's LoadImage mask is empty).
    absent_from: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None


# Which constraints each kind may narrow (the rest are refused at parse time).
KIND_CONSTRAINTS: dict[str, frozenset[str]] = {
    "short_text": frozenset({"max_length", "choices"}),
    "long_text": frozenset({"max_length"}),
    "integer": frozenset({"min", "max", "step"}),
    "number": frozenset({"min", "max", "step"}),
    "seed": frozenset({"min", "max"}),
    "choice": frozenset({"choices"}),
    "model": frozenset({"choices"}),
    "style": frozenset({"choices"}),
    "image": frozenset({"min_width", "min_height"}),
}


class InputDecl(_Strict):
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    label: Label
    help: Help = ""
    kind: InputKind
    targets: list[Target] = Field(default_factory=list, max_length=MAX_TARGETS)
    default: Any = None
    required: bool = False
    constraints: Constraints = Field(default_factory=Constraints)
    folder: Annotated[str, Field(pattern=FOLDER_PATTERN)] | None = None
    style: StyleBlock | None = None
    line_art: LineArt | None = None
    upload: UploadBlock | None = None
    # image only: the upload role the input takes (an upload of another role is refused at job creation)
    role: UploadRoleName | None = None
    # image only, optional inputs: nodes bypassed when no image is given (then nodes no output needs any
    # more, such as the LoadImage that fed them, are dropped)
    bypass_when_absent: list[NodeId] = Field(default_factory=list, max_length=MAX_TARGETS)

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set and self.default is not None

    @model_validator(mode="after")
    def _fits_its_kind(self) -> InputDecl:
        kind = self.kind
        narrowed = {k for k, v in self.constraints if v is not None}
        extra = sorted(narrowed - KIND_CONSTRAINTS[kind])
        if extra:
            raise ValueError(f"{a(kind)} input takes no constraint {', '.join(extra)}")
        if self.folder is not None and kind != "model":
            raise ValueError("folder is for a model input only")
        if (self.style is None) != (kind != "style"):
            raise ValueError("a style input has a style block; other kinds have none")
        if self.line_art is not None and kind != "image":
            raise ValueError("line_art is for an image input only")
        if self.upload is not None and kind != "image":
            raise ValueError("upload is for an image input only")
        if self.role is not None and kind != "image":
            raise ValueError("role is for an image input only")
        if self.bypass_when_absent and kind != "image":
            raise ValueError("bypass_when_absent is for an image input only")
        if self.bypass_when_absent and self.required:
            raise ValueError("a required input is never absent: bypass_when_absent is for an optional one")
        if len(set(self.bypass_when_absent)) != len(self.bypass_when_absent):
            raise ValueError("bypass_when_absent must not repeat a node")
        if kind == "style" and self.targets:
            raise ValueError("a style input acts through its style block: targets must be empty")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets must not repeat")
        return self


# InputDecl fields added after versions were first stored, with the value that means "not used".
LATER_FIELDS: dict[str, Any] = {"role": None, "bypass_when_absent": [], "upload": None}


class PassOutput(_Strict):
    node: NodeId
    label: Label


class Outputs(_Strict):
    results: list[NodeId] = Field(min_length=1, max_length=MAX_OUTPUTS)
    passes: list[PassOutput] = Field(default_factory=list, max_length=MAX_OUTPUTS)

    @model_validator(mode="after")
    def _distinct(self) -> Outputs:
        ids = [*self.results, *(p.node for p in self.passes)]
        if len(set(ids)) != len(ids):
            raise ValueError("a node is listed twice in results and passes")
        return self


class Declaration(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    title: Title
    description: Description = ""
    graph: dict[str, Any] = Field(min_length=1)
    inputs: list[InputDecl] = Field(default_factory=list, max_length=MAX_INPUTS)
    outputs: Outputs

    @model_validator(mode="after")
    def _keys_unique(self) -> Declaration:
        keys = [i.key for i in self.inputs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"input keys must be unique: {', '.join(twice)} repeated")
        images = {i.key for i in self.inputs if i.kind == "image"}
        for item in self.inputs:
            of = item.upload.mask_of if item.upload is not None else None
            if of is not None and (of not in images or of == item.key):
                raise ValueError(f"input {item.key}: mask_of names {of}, not another image input")
            fallback = item.upload.absent_from if item.upload is not None else None
            if fallback is not None and (fallback not in images or fallback == item.key or item.required):
                raise ValueError(f"input {item.key}: absent_from names {fallback}, not another image input")
        return self

    def input(self, key: str) -> InputDecl:
        return next(i for i in self.inputs if i.key == key)

    def spec(self) -> dict[str, Any]:
        """What a version stores and hashes: graph, inputs, outputs (title and description may change)."""
        dumped = self.model_dump(mode="json", include={"graph", "inputs", "outputs"})
        for item in dumped["inputs"]:  # fields added later are left out unset: older versions hash the same
            for key, unset in LATER_FIELDS.items():
                if item.get(key) == unset:
                    del item[key]
        return dumped


def json_depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value, walked without recursion (a hostile depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | Mapping):  # dict first: the ABC check is slow
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_json_text(text: str | bytes) -> None:
    """Size and depth of a JSON text checked *before* `json.loads` (whose parser recurses)."""
    if len(text) > MAX_GRAPH_BYTES + 64 * 1024:
        raise DeclarationError(
            [{"field": "", "message": f"a declaration is at most {MAX_GRAPH_BYTES} bytes"}]
        )
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    brackets = re.sub(r'"(?:[^"\\]|\\.)*"', "", s)  # strings may hold any bracket
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise DeclarationError([{"field": "", "message": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"}])


def load_declaration_json(text: str | bytes) -> Declaration:
    check_json_text(text)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DeclarationError([{"field": "", "message": f"not JSON: {exc}"}]) from None
    return parse_declaration(doc)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_declaration(doc: Any) -> Declaration:
    """Read a declaration; every fault is reported with its field path."""
    if not isinstance(doc, Mapping):
        raise DeclarationError([{"field": "", "message": "a declaration is a JSON object"}])
    if json_depth(doc) > MAX_JSON_DEPTH:
        raise DeclarationError([{"field": "", "message": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"}])
    graph = doc.get("graph")
    if isinstance(graph, Mapping):
        if len(graph) > MAX_NODES:
            message = f"a graph has at most {MAX_NODES} nodes (this one has {len(graph)})"
            raise DeclarationError([{"field": "graph", "message": message}])
        size = len(json.dumps(graph, ensure_ascii=False, default=str).encode())
        if size > MAX_GRAPH_BYTES:
            message = f"a graph is at most {MAX_GRAPH_BYTES} bytes of JSON (this one is {size})"
            raise DeclarationError([{"field": "graph", "message": message}])
    try:
        return Declaration.model_validate(doc)
    except ValidationError as exc:
        errors = [{"field": _field(e["loc"]), "message": _message(e)} for e in exc.errors()]
        raise DeclarationError(errors) from None


def _message(e: Any) -> str:
    message = str(e["msg"])
    return message.removeprefix("Value error, ")
