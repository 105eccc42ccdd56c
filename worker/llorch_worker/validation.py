"""Request bodies read through the shared models of `api.py`: a pydantic ValidationError becomes one
clear 400 that names the field, says what it must be and what came instead.

    {"error": {"code": "invalid_field", "field": "temperature",
               "message": "field 'temperature' must be between 0.0 and 10.0, got int -1",
               "hint": "fix that field and send the request again (the fields: docs/worker.md)"}}

A missing top-level field is `missing_field`; anything else is `invalid_field`. The checks that need the
loaded model (token ids in the vocabulary, the context length) stay in the handlers.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .errors import ApiError

R = TypeVar("R", bound=BaseModel)
HINT = "fix that field and send the request again (the fields: docs/worker.md)"

_TYPE_WANTS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "an object", "model_type": "an object",
    "model_attributes_type": "an object", "none_required": "null",
}
_BOUND_TYPES = ("greater_than_equal", "less_than_equal", "greater_than", "less_than")


def parse(model: type[R], body: dict[str, Any]) -> R:
    """`body` (already JSON-decoded) as `model`, or ApiError 400 naming the first field at fault."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(model, body, exc) from None


def _is_union_tag(part: str | int) -> bool:
    """pydantic names the member of a union it tried in the error's location ('str', 'list[int]')."""
    return isinstance(part, str) and (part in ("int", "float", "str", "bool", "none") or "[" in part
                                      or part.startswith(("function-", "constrained-")))


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, also inside list[...], X | None and Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _locate(model: type[BaseModel], loc: tuple[str | int, ...], body: Any) -> tuple[str, FieldInfo | None, Any]:
    """(the path as a client writes it, the model field it ends on if it ends on one, the value sent there).
    The path stops at a union's member tag: which member failed is not the client's concern, the field is."""
    where, field, value = "", None, body
    current: type[BaseModel] | None = model
    for part in loc:
        if _is_union_tag(part):
            break
        if isinstance(part, int):
            where += f"[{part}]"
            field = None
        elif current is not None and part in current.model_fields:
            field = current.model_fields[part]
            where += f".{part}" if where else part
            current = _inner_model(field.annotation)
        else:  # a key of a dict field
            where += f"[{part!r}]"
            field = None
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
    return where or "body", field, value


def _bounds(field: FieldInfo | None, err: Any) -> str:
    lo = hi = None
    for m in field.metadata if field is not None else []:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Le):
            hi = m.le
    ctx = err.get("ctx") or {}
    lo, hi = lo if lo is not None else ctx.get("ge"), hi if hi is not None else ctx.get("le")
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    return f"at least {lo}" if lo is not None else f"at most {hi}"


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def invalid_request(model: type[BaseModel], body: dict[str, Any], exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where, field, value = _locate(model, tuple(first["loc"]), body)
    if first["type"] == "missing":
        top = len(first["loc"]) == 1
        return ApiError(400, "missing_field" if top else "invalid_field", f"field {where!r} is required",
                        hint=HINT, field=where)
    same = [e for e in errors if _locate(model, tuple(e["loc"]), body)[0] == where]
    if field is not None and field.description:
        want = field.description
    elif any(e["type"] in _BOUND_TYPES for e in same):
        want = _bounds(field, next(e for e in same if e["type"] in _BOUND_TYPES))
    else:
        wants = dict.fromkeys(_TYPE_WANTS.get(e["type"], str(e["msg"]).lower()) for e in same)
        want = " or ".join(wants)
    return ApiError(400, "invalid_field", f"field {where!r} must be {want}, got {_shown(value)}"[:300],
                    hint=HINT, field=where)

