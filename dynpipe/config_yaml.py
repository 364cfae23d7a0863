"""YAML config templates: read, check and turn a file into ``PipelineConfig.merged`` changes.

The schema is derived from ``PipelineConfig``/``StepConfig`` (their ``yaml_keys``), so types
and limits have one source of truth; ``key: null`` leaves a value as it is. Every problem
with a file, from bytes that are not UTF-8 to a value out of range, is a ``ConfigError``
naming the file and, where known, the line and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .config import (
    PipelineConfig,
    ResourceSettings,
    StepConfig,
    build_model,
    error_message,
)
from .errors import ConfigError

MAX_DEPTH = 64
"""Deepest nesting of lists/mappings a config file may have."""
MAX_VALUES = 100_000
"""Most values a config file may expand to once its ``*aliases`` are followed."""


class _FileSettings(BaseModel):
    """``settings:`` of a step in a YAML template: ``resources`` is checked where it is written."""

    model_config = ConfigDict(extra="allow")
    resources: ResourceSettings | None = None


def _file_model(name: str, source: type[BaseModel], overrides: dict[str, Any]) -> type[BaseModel]:
    """``source``'s YAML-settable fields with their types and constraints; extra keys forbidden.

    Each field is optional with default None: ``key: null`` in a file leaves the value as it is.
    """
    fields: dict[str, Any] = {}
    for key in source.yaml_keys:  # type: ignore[attr-defined]
        info = source.model_fields[key]
        annotation = overrides.get(key, info.annotation)
        if info.metadata:  # constraints such as ge=0 travel with the type
            params = (annotation, *info.metadata)
            annotation = Annotated[params]
        fields[key] = (Optional[annotation], None)  # noqa: UP045 - a runtime type expression
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


_StepFile = _file_model("StepFileConfig", StepConfig, {"settings": _FileSettings})
_PipelineFile = _file_model("PipelineFileConfig", PipelineConfig, {"steps": dict[str, _StepFile]})  # type: ignore[valid-type]


class _Loader(yaml.SafeLoader):
    """Safe loader whose scalar errors (bad dates, ints over the digit limit) carry their line.

    It also stops at ``MAX_DEPTH`` nested ``[``/``{``: pyyaml's scanner takes time quadratic
    in that depth (a line of 3,000 brackets takes seconds), so deeper files are rejected early.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(
                None, None, f"values nested more than {MAX_DEPTH} levels deep", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            value = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read value {shown!r}: {exc}", node.start_mark
            ) from None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` in a composed YAML node tree."""
    line = None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            break
    return line


def _check_shape(root: yaml.Node, file: Path) -> None:
    """Reject recursive aliases, deep nesting and alias bombs before anything is built from them."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        where = f"{file}, line {node.start_mark.line + 1}"
        if key in on_path:
            raise ConfigError(f"{where}: a recursive alias (a value that contains itself)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: values nested more than {MAX_DEPTH} levels deep")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            on_path.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_VALUES:
                    raise ConfigError(f"{where}: the file expands to more than {MAX_VALUES} values (aliases)")
            on_path.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _parse(text: str, file: Path) -> tuple[yaml.Node | None, Any]:
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_shape(node, file)
        return node, loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise ConfigError(f"malformed YAML in {file}{where}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"malformed YAML in {file}, line {line}: character {_char(exc.character)} is not allowed"
            " (special characters are not allowed)"
        ) from None
    except RecursionError:
        where = f", line {loader.get_mark().line + 1}" if loader is not None else ""
        raise ConfigError(f"malformed YAML in {file}{where}: values nested too deeply") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:  # the parser's own surprises
        raise ConfigError(f"malformed YAML in {file}: {type(exc).__name__}: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _char(character: int | bytes | str) -> str:
    return f"#x{character:04x}" if isinstance(character, int) else repr(character)


def _read(file: Path) -> str:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{file}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start});"
            " save the config file as UTF-8"
        ) from None


def load_config_file(path: str | Path, known_steps: set[str] | None) -> dict[str, Any]:
    """Read a YAML config template; return changes for ``PipelineConfig.merged``.

    ``known_steps`` are the step names the pipeline ``depends_on``; a ``steps:`` key naming
    any other step is an error that names the key and the file.
    """
    file = Path(path)
    node, raw = _parse(_read(file), file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a mapping at the top level")
    try:
        parsed = _PipelineFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(node, loc)
        key = ".".join(str(p) for p in loc)
        what = error_message(err)
        where = f", line {line}" if line else ""
        raise ConfigError(f"{file}{where}: {key}: {what}") from None
    steps: dict[str, Any] = parsed.steps or {}  # type: ignore[attr-defined]
    if known_steps is not None:
        for step_name in steps:
            if step_name not in known_steps:
                line = _line_of(node, ("steps", step_name))
                where = f", line {line}" if line else ""
                known = ", ".join(sorted(known_steps)) or "none (add them with depends_on=[...])"
                raise ConfigError(
                    f"{file}{where}: steps.{step_name}: no such step in this pipeline"
                    f" (configurable steps: {known})"
                )
    changes: dict[str, Any] = parsed.model_dump(exclude_unset=True)
    changes["steps"] = {
        name: build_model(
            StepConfig,
            {k: v for k, v in cfg.model_dump(exclude_unset=True).items() if v is not None},  # null: leave as is
            f"configuration of steps.{name} in {file}",
        )
        for name, cfg in steps.items()
    }
    return changes
