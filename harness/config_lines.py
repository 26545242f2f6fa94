"""Where a key of bench.yaml is written: line numbers for messages, and pydantic's errors as one line each
that names file, line, key and the allowed keys or values."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import UserError, unknown_name


def unknown_message(what: str, value: str, known) -> str:
    return str(unknown_name(what, value, known, "allowed"))


def line_index(node: yaml.Node, path: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    """Map each key path (as pydantic reports it) to its 1-based line in the YAML file."""
    index = {} if index is None else index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = path + (key_node.value,)
            index[key_path] = key_node.start_mark.line + 1
            line_index(value_node, key_path, index)
            index[key_path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line_index(item, path + (i,), index)
    return index


def line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    model: type[BaseModel] = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return [k for k in model.model_fields if k != "source_path"]


def format_error(root: type[BaseModel], path: Path, err: dict, lines: dict[tuple, int]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    line = line_for(loc, lines)
    where = f"{path}:{line}" if line else str(path)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(root, loc)
        return f"{where}: {unknown_message('key', str(loc[-1]), allowed)} (at {key})"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{where}: missing required key {key!r}"
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) else ""
    return f"{where}: {key}: {msg}{shown}"


def validated_yaml(path: Path, model: type[BaseModel], what: str, top_keys: str):
    """`path` read as YAML and validated as `model`: (the model, the file's line index). Every mistake is a
    UserError naming the file (and line and key): unreadable, not YAML, not a mapping (`top_keys` says which
    keys are expected), each validation error on its own line. `what`: the kind of file, for the messages."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        kind = "a GGUF model" if path.read_bytes()[:4] == b"GGUF" else "not text"
        raise UserError(f"{path}: {kind}; expected {what}") from None
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys ({top_keys}) at the top level")
    lines = line_index(node) if node is not None else {}
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        raise UserError("\n".join(format_error(model, path, err, lines) for err in exc.errors())) from None
