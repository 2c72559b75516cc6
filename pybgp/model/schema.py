"""The tiny field-spec table that drives decoding and encoding of every spec.

Each model dataclass derives from :class:`Struct` and lists its JSON fields
once, in ``FIELDS``: JSON name, attribute name, converter, dumper.  From that
table :func:`decode` checks types and rejects unknown keys (calicoctl decodes
strictly) and :func:`encode` writes Calico's JSON, omitting unset fields the
way Go's ``omitempty`` does.  A struct may override ``finish(path)`` to apply
Calico's create-time defaults and cross-field checks.  No kind knowledge here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pybgp.model.values import Conv, Dump, expect, fail


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class F:
    """One JSON field of a struct.

    ``ptr`` marks Go pointer fields (``*bool``, ``*int``...): unset is None and a
    zero value is still written.  ``always`` marks fields without ``omitempty``.
    """

    json: str
    attr: str
    conv: Conv
    dump: Dump = _same
    ptr: bool = False
    always: bool = False
    required: bool = False


S = TypeVar("S", bound="Struct")


class Struct:
    """Base of every model dataclass; see the module docstring."""

    FIELDS: ClassVar[tuple[F, ...]] = ()
    # Extra JSON keys accepted and kept as-is (FelixConfiguration).
    PASSTHROUGH: ClassVar[frozenset[str]] = frozenset()

    def finish(self, path: str) -> None:
        """Apply defaults and cross-field checks after decoding (override)."""

    @classmethod
    def decode(cls: type[S], data: Any, path: str) -> S:
        return decode(cls, data, path)

    def encode(self) -> dict[str, Any]:
        return encode(self)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def decode(cls: type[S], data: Any, path: str) -> S:
    """Build ``cls`` from a JSON object, validating every field."""
    if data is None:
        data = {}
    obj = expect(data, dict, path, "an object")
    by_json = {f.json: f for f in cls.FIELDS}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in obj.items():
        field = by_json.get(key)
        if field is None:
            if key in cls.PASSTHROUGH:
                extra[key] = copy.deepcopy(raw)
                continue
            raise fail(join(path, str(key)), "unknown field")
        if raw is None:  # Go leaves the field unset on JSON null
            continue
        kwargs[field.attr] = field.conv(raw, join(path, key))
    for field in cls.FIELDS:
        if field.required and field.attr not in kwargs:
            raise fail(join(path, field.json), "required field is missing")
    if cls.PASSTHROUGH:
        kwargs["extra"] = extra
    instance = cls(**kwargs)
    instance.finish(path)
    return instance


def is_empty(value: Any) -> bool:
    """Go's omitempty: false, 0, "", empty list/map, nil."""
    if value is None:
        return True
    if isinstance(value, Struct):
        return not encode(value)
    return value is False or value == 0 or value == "" or value == [] or value == {}


def encode(obj: Struct) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in obj.FIELDS:
        value = getattr(obj, field.attr)
        if value is None:
            continue
        if not (field.ptr or field.always) and is_empty(value):
            continue
        out[field.json] = field.dump(value)
    extra = getattr(obj, "extra", None)
    if obj.PASSTHROUGH and extra:
        out.update(extra)
    return out


def struct(cls: type[Struct]) -> Conv:
    """Converter for a nested struct field."""
    return lambda value, path: decode(cls, value, path)


def dump_struct(value: Struct) -> dict[str, Any]:
    return encode(value)


def checked(conv: Conv, check: Callable[[Any], str | None]) -> Conv:
    """``conv`` followed by ``check(value)`` returning an error message or None."""
    def wrapped(value: Any, path: str) -> Any:
        result = conv(value, path)
        message = check(result)
        if message:
            raise fail(path, message)
        return result
    return wrapped
