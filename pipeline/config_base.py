"""The base of every stage and run config: unknown keys are errors, runtime knobs stay out of identities.

A field declared with `runtime(...)` (worker counts, batch sizes, flush intervals) changes how fast a
stage runs, never what it writes, so `identity()` (what fingerprints and index keys hash) leaves it out:
raising `verify.workers` reruns nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import JsonDict
from pydantic_core import to_jsonable_python

_RUNTIME: JsonDict = {"runtime": True}
_UNKNOWN_KEY_ERRORS = {"extra_forbidden", "unexpected_keyword_argument"}


def runtime(default: Any = ..., **kwargs: Any) -> Any:
    """A field that changes how a stage runs, never its output."""
    return Field(default, json_schema_extra=_RUNTIME, **kwargs)


def is_runtime(model: type[BaseModel], name: str) -> bool:
    return model.model_fields[name].json_schema_extra == _RUNTIME


def identity(value: Any) -> Any:
    """JSON-able form of a config without its runtime fields, at any depth."""
    if isinstance(value, BaseModel):
        model = type(value)
        return {name: identity(getattr(value, name)) for name in model.model_fields if not is_runtime(model, name)}
    if isinstance(value, list | tuple):
        return [identity(v) for v in value]
    if isinstance(value, dict):
        return {str(k): identity(v) for k, v in value.items()}
    return to_jsonable_python(value)


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def identity(self) -> dict:
        return identity(self)


class ConfigError(ValueError):
    """A config that does not validate, every problem named by its dotted key path."""


def _field_types(cls: type) -> dict[str, Any]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {name: field.annotation for name, field in cls.model_fields.items()}
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return {}


def _step(annotation: Any, key: str | int) -> Any:
    """The type found under `key` inside a value of type `annotation`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _step(arg, key)
            if found is not None:
                return found
        return None
    if origin in (list, tuple, dict) and args:
        return args[-1] if origin is not tuple else args[0]
    return _field_types(annotation).get(key) if isinstance(key, str) else None


def _container(annotation: Any) -> Any:
    """The config class itself when `annotation` is Optional[...] of one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((a for a in typing.get_args(annotation) if _field_types(a)), None)
    return annotation


def _dotted(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def explain(error: ValidationError, root: type) -> ConfigError:
    """One line per problem; an unknown key names its nearest valid spelling."""
    lines = []
    for problem in error.errors():
        loc = problem["loc"]
        if problem["type"] in _UNKNOWN_KEY_ERRORS:
            parent: Any = root
            for key in loc[:-1]:
                parent = _step(parent, key) if parent is not None else None
            valid = list(_field_types(_container(parent)))
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"did you mean {_dotted((*loc[:-1], close[0]))}?" if close else f"valid keys: {', '.join(valid)}"
            lines.append(f"{_dotted(loc)}: unknown key ({hint})")
        else:
            lines.append(f"{_dotted(loc) or '<root>'}: {problem['msg']}")
    return ConfigError(f"invalid {root.__name__}:\n  " + "\n  ".join(lines))


def validate_config(root: type[BaseModel], tree: Any) -> Any:
    """`root.model_validate(tree)`, raising a ConfigError that names every bad key path."""
    try:
        return root.model_validate(tree)
    except ValidationError as error:
        raise explain(error, root) from None
