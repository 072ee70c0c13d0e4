"""What makes the REST app's OpenAPI document the truth: one error body for every 4xx / 5xx, each route's
possible status codes, JSON schemas for the bodies parsed by hand (a KpiIndication in proto3 JSON, derived from
its descriptor; the A1 policy type's own schema), and the Allow header of a 405 listing every method of the path.
Checked by schemathesis against the live app (tests/service/test_openapi.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="what was wrong, in words")


DESCRIPTIONS = {
    400: "the body is not JSON, or not of the documented form",
    401: "authentication is on and the call carries no known token",
    403: "the token may read only; the call needs a write token",
    404: "unknown model, cell, policy type or policy",
    413: "the body is larger than http_max_body_bytes, or the policies' scopes would be too large",
    422: "a value outside its documented range or the rules between fields (the detail names it)",
    429: "too many cold-start predict calls at once; retry after Retry-After seconds",
    503: "not ready (no bundle) or the ingest queue is full; retry after Retry-After seconds",
}
WRITE = (401, 403, 413)  # every mutating call: authentication and the body limit


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route answering these error codes, each with the ErrorOut body."""
    return {c: {"model": ErrorOut, "description": DESCRIPTIONS[c]} for c in sorted(set(codes))}


def install(app: FastAPI) -> None:
    """Request validation errors as ErrorOut (one string naming each offending field, not FastAPI's list), and
    405s whose Allow header lists every method the path has."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:10]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.middleware("http")
    async def allow_header(request: Request, call_next):
        response = await call_next(request)
        if response.status_code == 405:
            methods = set()
            for route in app.router.routes:
                match = getattr(route, "path_regex", None)
                if match is not None and match.match(request.url.path):
                    methods |= set(getattr(route, "methods", None) or ())
            if methods:
                response.headers["Allow"] = ", ".join(sorted(methods))
        return response


# proto3 JSON mapping (protobuf.dev/programming-guides/json): 64-bit integers as decimal strings or numbers,
# floating point as numbers or "NaN" / "Infinity" / "-Infinity", enums by name or number
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
# 64-bit integers as strings: digit counts whose every value is in range (10^19 − 1 < 2^64, 10^18 − 1 < 2^63)
_64_BIT_STRING = {FieldDescriptor.TYPE_UINT64: "^[0-9]{1,19}$", FieldDescriptor.TYPE_FIXED64: "^[0-9]{1,19}$",
                  FieldDescriptor.TYPE_INT64: "^-?[0-9]{1,18}$", FieldDescriptor.TYPE_SINT64: "^-?[0-9]{1,18}$",
                  FieldDescriptor.TYPE_SFIXED64: "^-?[0-9]{1,18}$"}


def _field_schema(f: FieldDescriptor) -> dict[str, Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_json_schema(f.message_type)
    if t == FieldDescriptor.TYPE_ENUM:
        return {"anyOf": [{"type": "string", "enum": [v.name for v in f.enum_type.values]},
                          {"type": "integer", "enum": [v.number for v in f.enum_type.values]}]}
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        number = {"type": "integer", "minimum": lo, "maximum": hi}
        return {"anyOf": [number, {"type": "string", "pattern": _64_BIT_STRING[t]}]} if t in _64_BIT_STRING else number
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
    if t == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if t == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def message_json_schema(descriptor: Descriptor) -> dict[str, Any]:
    """The JSON Schema of a message's proto3 JSON form (json_format.Parse's input: each field by its JSON name or
    its proto name; unknown fields refused)."""
    props = {}
    for f in descriptor.fields:
        s = _field_schema(f)
        s = {"type": "array", "items": s} if f.is_repeated else s
        props[f.json_name] = props[f.name] = {"anyOf": [s, {"type": "null"}]}  # null: the field's default
    schema = {"type": "object", "title": descriptor.name, "properties": props, "additionalProperties": False}
    both = [{"not": {"required": [f.json_name, f.name]}} for f in descriptor.fields if f.json_name != f.name]
    return {**schema, "allOf": both} if both else schema  # one field, one spelling


def _field_check(f: FieldDescriptor) -> Callable[[Any], bool]:
    """A predicate accepting exactly the values _field_schema(f) allows (one non-repeated value)."""
    t = f.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        inner = message_json_check(f.message_type)
        return lambda v: inner(v) is None
    if t == FieldDescriptor.TYPE_ENUM:
        names, numbers = {v.name for v in f.enum_type.values}, {v.number for v in f.enum_type.values}
        return lambda v: (isinstance(v, str) and v in names) or (_is_int(v) and int(v) in numbers)
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        pattern = re.compile(_64_BIT_STRING[t]) if t in _64_BIT_STRING else None
        return lambda v: (_is_int(v) and lo <= v <= hi) or (pattern is not None and isinstance(v, str)
                                                             and pattern.fullmatch(v) is not None)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return lambda v: (isinstance(v, int | float) and not isinstance(v, bool)) or v in _FLOAT_WORDS
    if t == FieldDescriptor.TYPE_BOOL:
        return lambda v: isinstance(v, bool)
    return lambda v: isinstance(v, str)


_FLOAT_WORDS = ("NaN", "Infinity", "-Infinity")


def _is_int(v: Any) -> bool:
    """A JSON Schema integer: an int (not a bool) or an integral float (JSON "1.0")."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def message_json_check(descriptor: Descriptor) -> Callable[[Any], str | None]:
    """A validator of message_json_schema(descriptor), in plain Python (jsonschema libraries take seconds on a
    1 MiB indication): returns None for a valid value, else the path of the first offending field."""
    fields = {}
    for f in descriptor.fields:
        fields[f.json_name] = fields[f.name] = (f, _field_check(f))
    pairs = [(f.json_name, f.name) for f in descriptor.fields if f.json_name != f.name]

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"{descriptor.name}: not an object"
        for key, v in value.items():
            hit = fields.get(key)
            if hit is None:
                return f"{descriptor.name}.{key}: no such field"
            if v is None:
                continue
            f, ok = hit
            if f.is_repeated:
                if not isinstance(v, list):
                    return f"{descriptor.name}.{key}: not an array"
                bad = next((i for i, item in enumerate(v) if not ok(item)), None)
                if bad is not None:
                    return f"{descriptor.name}.{key}[{bad}]: not a valid {_type_name(f)}"
            elif not ok(v):
                return f"{descriptor.name}.{key}: not a valid {_type_name(f)}"
        for a, b in pairs:
            if a in value and b in value:
                return f"{descriptor.name}: both {a} and {b} given"
        return None

    return check


def _type_name(f: FieldDescriptor) -> str:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return f.message_type.name
    return {FieldDescriptor.TYPE_DOUBLE: "number", FieldDescriptor.TYPE_FLOAT: "number",
            FieldDescriptor.TYPE_BOOL: "boolean", FieldDescriptor.TYPE_STRING: "string",
            FieldDescriptor.TYPE_ENUM: "enum value"}.get(f.type, "integer in range")


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": schema}}}}


__all__ = ["DESCRIPTIONS", "WRITE", "ErrorOut", "errors", "install", "json_body", "message_json_check",
           "message_json_schema"]
