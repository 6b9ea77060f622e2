"""Deterministic example instances for JSON Schemas (test stand-in helper).

:func:`example_from_schema` builds a small, valid instance for the subset of
JSON Schema that pydantic's ``model_json_schema()`` and OpenAI's strict
structured outputs emit: objects, arrays (``minItems``/``maxItems``/
``prefixItems``/``uniqueItems``), ``enum``/``const``, strings (``format``,
``minLength``/``maxLength``, a few simple ``pattern``\\ s), numbers within
``minimum``/``maximum`` (exclusive variants, ``multipleOf``), booleans,
``null``, ``$ref`` into ``$defs``/``definitions``, ``allOf``, ``anyOf``/``oneOf``
(nullable unions) and type lists such as ``["string", "null"]``.

Strings are derived from the property name ("acceptance_criteria" items become
"Acceptance criterion 1 for <title>") and, when a *context* mapping is given,
a property whose name matches a context key takes that value verbatim, so
answers differ per request while staying deterministic.

:func:`violate_schema` turns a valid instance into valid JSON that breaks the
schema (a required field missing, or a wrongly typed value).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["example_from_schema", "violate_schema", "resolve_ref"]

Schema = Mapping[str, Any]

#: Past this depth optional properties are skipped, arrays shrink to
#: ``minItems`` and nullable unions pick ``null`` (recursive models end).
_SOFT_DEPTH = 6
#: Past this depth the schema is deemed infinitely recursive.
_HARD_DEPTH = 40

_FORMAT_EXAMPLES: dict[str, str] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "duration": "P1D",
    "email": "dev@example.com",
    "idn-email": "dev@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/example",
    "regex": ".*",
}
_URI_FORMATS = frozenset({"uri", "url", "iri", "uri-reference", "iri-reference"})
_PATTERN_CANDIDATES = (
    "example", "https://example.com/example", "abc", "ABC", "abc123", "a1", "a-b", "a_b", "0", "1", "123", "1.0.0",
    "v1.0.0", "owner/repo", "src/example.py", "#1", "2024-01-01", "deadbeef",
)
_IRREGULAR_SINGULARS = {"criteria": "criterion", "children": "child", "people": "person"}


def resolve_ref(root: Schema, ref: str) -> Schema:
    """Resolve a local JSON pointer ``ref`` (``#``, ``#/$defs/Name``...) in ``root``."""
    if ref in ("#", ""):
        return root
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise ValueError(f"unresolvable $ref {ref!r}")
    if not isinstance(node, Mapping):
        raise ValueError(f"$ref {ref!r} does not point at a schema")
    return node


def _humanize(name: str) -> str:
    """``acceptanceCriteria`` / ``acceptance_criteria`` -> ``Acceptance criteria``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    words = " ".join(words.split()).lower()
    return words[:1].upper() + words[1:]


def _singular(name: str) -> str:
    """A rough singular of an (array) property name, for naming its items."""
    head, _, last = name.rpartition("_")
    lower = last.lower()
    if lower in _IRREGULAR_SINGULARS:
        last = _IRREGULAR_SINGULARS[lower]
    elif lower.endswith("ies") and len(lower) > 4:
        last = last[:-3] + "y"
    elif lower.endswith(("ses", "xes", "ches", "shes")):
        last = last[:-2]
    elif lower.endswith("s") and not lower.endswith("ss") and len(lower) > 3:
        last = last[:-1]
    return f"{head}_{last}" if head else last


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


class _Generator:
    def __init__(self, root: Schema, context: Mapping[str, str] | None) -> None:
        self.root = root
        self.context = {_norm_key(k): v for k, v in (context or {}).items() if v}
        self.title = self.context.get("title")
        self.active: list[str] = []  # $refs being expanded (recursion detection)

    # -- schema plumbing -------------------------------------------------
    def resolve(self, schema: Any) -> Any:
        """Follow ``$ref`` chains; sibling keywords override the target's."""
        seen = 0
        while isinstance(schema, Mapping) and "$ref" in schema:
            seen += 1
            if seen > 32:
                raise ValueError("$ref cycle")
            target = resolve_ref(self.root, schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings} if siblings else target
        return schema

    def merge_all_of(self, schema: Schema) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.resolve(part)
            if not isinstance(part, Mapping):
                continue
            if "allOf" in part:
                part = self.merge_all_of(part)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                else:
                    merged.setdefault(key, value)
        return merged

    # -- generation --------------------------------------------------------
    def refs_in(self, schema: Any) -> set[str]:
        """The ``$ref`` targets reachable from ``schema`` without entering an object."""
        if not isinstance(schema, Mapping):
            return set()
        found = {schema["$ref"]} if isinstance(schema.get("$ref"), str) else set()
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in schema.get(key) or ():
                found |= self.refs_in(sub)
        found |= self.refs_in(schema.get("items"))
        return found

    def recursive(self, schema: Any) -> bool:
        """Would generating ``schema`` re-enter a model being generated?"""
        return bool(self.refs_in(schema) & set(self.active))

    def gen(self, schema: Any, name: str, index: int | None, depth: int) -> Any:
        if depth > _HARD_DEPTH:
            raise ValueError("schema recursion too deep to build an example")
        if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            self.active.append(schema["$ref"])
            try:
                return self.gen_resolved(self.resolve(schema), name, index, depth)
            finally:
                self.active.pop()
        return self.gen_resolved(schema, name, index, depth)

    def gen_resolved(self, schema: Any, name: str, index: int | None, depth: int) -> Any:
        if schema is False:
            return None
        if not isinstance(schema, Mapping):  # ``True`` or junk: anything goes
            return self.string({}, name, index)
        if "allOf" in schema:
            return self.gen(self.merge_all_of(schema), name, index, depth)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if "enum" in schema and schema["enum"]:
            values = schema["enum"]
            return copy.deepcopy(values[(index - 1) % len(values) if index else 0])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.union(schema[key], name, index, depth)

        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [t for t in kind if t != "null"]
            if not non_null or (depth >= _SOFT_DEPTH and "null" in kind):
                return None
            kind = non_null[0]
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.object(schema, name, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind == "integer":
            return self.number(schema, integer=True)
        if kind == "number":
            return self.number(schema, integer=False)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self.string(schema, name, index)

    def union(self, branches: list[Any], name: str, index: int | None, depth: int) -> Any:
        resolved = [self.resolve(b) for b in branches]
        is_null = [isinstance(r, Mapping) and r.get("type") == "null" for r in resolved]
        candidates = [b for b, null in zip(branches, is_null) if not null]
        if any(is_null) and (depth >= _SOFT_DEPTH or all(self.recursive(b) for b in candidates)):
            return None
        if not candidates:
            return None
        candidates.sort(key=self.recursive)  # prefer a branch that ends the recursion
        return self.gen(candidates[0], name, index, depth)

    def object(self, schema: Schema, name: str, depth: int) -> dict[str, Any]:
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if key in required or (depth < _SOFT_DEPTH and not self.recursive(sub)):
                out[key] = self.gen(sub, key, None, depth + 1)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, Mapping) and extra:
            key = f"{_singular(name) or 'example'}_key" if name else "example_key"
            out[key] = self.gen(extra, key, None, depth + 1)
        return out

    def array(self, schema: Schema, name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems") or 0)
        high = schema.get("maxItems")
        prefix: list[Any] = list(schema.get("prefixItems") or ())
        items = schema.get("items", {})
        if depth >= _SOFT_DEPTH or self.recursive(items):
            count = low
        else:
            count = max(low, 2 if high is None else min(2, int(high)))
        if items is False:
            count = min(count, len(prefix)) if prefix else 0
        item_name = _singular(name) if name else "item"
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            out.append(self.gen(sub, item_name, i + 1, depth + 1))
        return out

    def number(self, schema: Schema, *, integer: bool) -> int | float:
        low, high = schema.get("minimum"), schema.get("maximum")
        low_excl, high_excl = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        # Draft 4 spells exclusivity as booleans next to minimum/maximum.
        if isinstance(low_excl, bool):
            low_excl = low if low_excl else None
        if isinstance(high_excl, bool):
            high_excl = high if high_excl else None
        step = schema.get("multipleOf")
        if integer:
            lo = max([v for v in (low, None if low_excl is None else math.floor(low_excl) + 1) if v is not None],
                     default=None)
            hi = min([v for v in (high, None if high_excl is None else math.ceil(high_excl) - 1) if v is not None],
                     default=None)
            lo = None if lo is None else math.ceil(lo)
            hi = None if hi is None else math.floor(hi)
            value = lo if lo is not None else (hi if hi is not None and hi < 1 else 1)
            if step:
                value = math.ceil(value / step) * step
                if hi is not None and value > hi:
                    value -= step
            return int(value)
        lo_f = low if low is not None else low_excl
        hi_f = high if high is not None else high_excl
        if lo_f is not None and hi_f is not None:
            value = (lo_f + hi_f) / 2
        elif lo_f is not None:
            value = lo_f + (1 if low is None else 0)
        elif hi_f is not None:
            value = min(0.5, hi_f - 1)
        else:
            value = 0.5
        if step:
            value = math.ceil(value / step) * step
        return float(value)

    def string(self, schema: Schema, name: str, index: int | None) -> str:
        fmt = schema.get("format")
        key = _norm_key(name) if name else ""
        if fmt in _URI_FORMATS:
            text = self._slug_url(name, index)
        elif fmt in _FORMAT_EXAMPLES:
            text = _FORMAT_EXAMPLES[fmt]
        elif key and key in self.context and index is None:
            text = self.context[key]
        elif key.endswith(("url", "uri", "link", "href", "homepage", "website")):
            text = self._slug_url(name, index)
        elif key.endswith(("path", "file", "filename")):
            text = f"src/{self._slug(name).replace('-', '_')}" + (f"_{index}" if index else "") + ".py"
        elif key.endswith("email"):
            text = _FORMAT_EXAMPLES["email"]
        else:
            label = _humanize(name) if name else "Example"
            if index:
                label = f"{label} {index}"
            text = f"{label} for {self.title}" if self.title and key != "title" else label
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            text = self.fit_pattern(text, pattern, index)
        min_len, max_len = schema.get("minLength"), schema.get("maxLength")
        if min_len is not None and len(text) < min_len:
            text = (text + " " + "x" * min_len)[:min_len] if text else "x" * min_len
        if max_len is not None and len(text) > max_len:
            cut = text[:max_len]
            stripped = cut.rstrip()
            text = stripped if stripped and len(stripped) >= (min_len or 0) else cut
        return text

    @staticmethod
    def _slug(name: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", (name or "example").lower()).strip("-") or "example"

    def _slug_url(self, name: str, index: int | None) -> str:
        return f"https://example.com/{self._slug(name)}" + (f"/{index}" if index else "")

    @staticmethod
    def fit_pattern(text: str, pattern: str, index: int | None) -> str:
        try:
            regex = re.compile(pattern)
        except re.error:
            return text
        candidates = [text, *(f"{c}{index}" if index else c for c in _PATTERN_CANDIDATES), *_PATTERN_CANDIDATES]
        for candidate in candidates:
            if regex.search(candidate):
                return candidate
        return text  # unsatisfiable by our guesses; documented limitation


def example_from_schema(schema: Schema, context: Mapping[str, str] | None = None) -> Any:
    """Return a deterministic instance of ``schema`` (see the module docstring).

    ``context`` maps field names (case/punctuation-insensitive) to strings
    used verbatim for string properties of that name; a ``title`` entry is
    also woven into the other generated strings.
    """
    return _Generator(schema, context).gen(schema, "", None, 0)


def violate_schema(instance: Any, schema: Schema, drop: str | None = None) -> Any:
    """Return valid JSON that no longer satisfies ``schema``.

    Drops ``drop`` (or the first required property) from the root object; with
    no required property, replaces the first property with a wrongly typed
    value; with no usable object schema, returns a JSON array instead.
    """
    gen = _Generator(schema, None)
    root = gen.resolve(schema)
    if isinstance(root, Mapping) and "allOf" in root:
        root = gen.merge_all_of(root)
    if not isinstance(instance, dict) or not isinstance(root, Mapping):
        return ["not", "an", "object"]
    broken = dict(instance)
    required = list(root.get("required") or ())
    target = drop if drop is not None else (required[0] if required else None)
    if target is not None:
        broken.pop(target, None)
        return broken
    props = list((root.get("properties") or {}).keys())
    if props:
        first = props[0]
        broken[first] = 12345 if isinstance(broken.get(first), str) else "not a valid value"
        return broken
    return ["not", "an", "object"]
