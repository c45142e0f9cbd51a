"""Report files -> text: plain text (``.txt``), JSON (``.json``) and XML
(``.xml``).

Bytes are decoded by ``text.decode_text`` (BOM, strict UTF-8, or plausible
GB18030/GBK; never a guess that could mangle the text). Then:

- ``.json``: the string at ``field`` (default ``"report"``; ``"a.b"`` walks
  nested objects). A list of strings is joined with newlines. A missing field
  or a non-string value is a ``DecodeError`` that lists the keys present.
- ``.xml``: the text content of the first element named ``field`` (its last
  dotted part, after the parents' names: ``"study.report"`` is a ``report``
  element inside a ``study`` element; namespaces ignored), stripped; when the
  document has no such element, all of its text content, one text node per
  line. A document with a ``<!DOCTYPE`` or ``<!ENTITY`` declaration is
  refused: without a DTD the parser can expand no entity, so entity-expansion
  ("billion laughs") and external-entity attacks cannot happen. The
  encoding an XML declaration names is tried first (GB2312 and GBK are read
  as their superset GB18030); if the bytes do not decode in it, the rules of
  ``decode_text`` apply.
- anything else: the decoded text as it is.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from pathlib import PurePath
from typing import Any

from dataengine.errors import DecodeError
from dataengine.formats.text import decode_text

__all__ = ["REPORT_SUFFIXES", "load_report", "report_from_json", "report_from_xml"]

_LOG = logging.getLogger(__name__)

REPORT_SUFFIXES = (".txt", ".json", ".xml")
_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._\-]+)[\"']")
_DECLARATION_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")
_FORBIDDEN = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_GB_ALIASES = {"gb2312", "gbk", "gb18030", "cp936", "ms936", "euc-cn", "euccn"}


def load_report(data: bytes, name: str, *, field: str = "report") -> str:
    """The report text of the file ``name`` (its suffix picks the loader;
    see the module docstring). Raises ``DecodeError`` naming ``name``."""
    suffix = PurePath(name).suffix.lower()
    if suffix == ".json":
        return report_from_json(data, field=field, label=name)
    if suffix == ".xml":
        return report_from_xml(data, field=field, label=name)
    return decode_text(data, label=name)[0]


def report_from_json(data: bytes, *, field: str = "report", label: str = "JSON report") -> str:
    """The string at ``field`` (dotted path) of a JSON object."""
    path = _field_path(field)
    text = decode_text(data, label=label)[0]
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"{label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except (RecursionError, ValueError) as exc:  # absurd nesting, huge integers
        raise DecodeError(f"{label}: invalid JSON: {exc}") from exc
    node = doc
    for depth, key in enumerate(path):
        if not isinstance(node, dict):
            where = ".".join(path[:depth]) or "the document"
            raise DecodeError(
                f"{label}: {where} is a JSON {_json_type(node)}, not an object with {key!r}"
            )
        if key not in node:
            keys = ", ".join(repr(k) for k in sorted(node)[:12]) or "none"
            raise DecodeError(f"{label}: no field {'.'.join(path[: depth + 1])!r} (keys: {keys})")
        node = node[key]
    if isinstance(node, str):
        return node
    if isinstance(node, list) and all(isinstance(item, str) for item in node):
        return "\n".join(node)
    raise DecodeError(
        f"{label}: field {field!r} is a JSON {_json_type(node)}, not a string or list of strings"
    )


def report_from_xml(data: bytes, *, field: str = "report", label: str = "XML report") -> str:
    """The text of the element named by ``field``, else all text content."""
    path = _field_path(field)
    text = _decode_xml(data, label)
    if _FORBIDDEN.search(text):
        raise DecodeError(
            f"{label}: XML with a DOCTYPE or ENTITY declaration is refused "
            "(entity expansion is unsafe); export the report without a DTD"
        )
    try:
        root = ET.fromstring(_DECLARATION_TEXT.sub("", text, count=1))
    except ET.ParseError as exc:
        line, column = exc.position
        raise DecodeError(f"{label}: invalid XML at line {line} column {column}: {exc}") from exc
    element = _find(root, path)
    if element is not None:
        return "".join(element.itertext()).strip()
    _LOG.debug("%s: no <%s> element; using all text content", label, ".".join(path))
    return "\n".join(t.strip() for t in root.itertext() if t.strip())


def _field_path(field: str) -> list[str]:
    path = field.split(".")
    if not field or any(not part for part in path):
        raise ValueError(f"report field must be a name or dotted path, got {field!r}")
    return path


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _decode_xml(data: bytes, label: str) -> str:
    declared = _DECLARATION.match(data)
    if declared:  # only matches ASCII-compatible bytes without a byte-order mark
        name = declared.group(1).decode("ascii").lower()
        codec = "gb18030" if name in _GB_ALIASES else name
        try:
            return data.decode(codec)
        except LookupError:
            _LOG.debug("%s: unknown declared encoding %r; detecting", label, name)
        except UnicodeDecodeError as exc:
            _LOG.debug("%s: not valid %s at byte %d; detecting", label, name, exc.start)
    return decode_text(data, label=label)[0]


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _find(root: ET.Element, path: list[str]) -> ET.Element | None:
    """First element (document order) matching ``path``: each part names an
    element inside the previous one, at any depth; the first part may be the
    root itself."""
    scope: ET.Element | None = root
    for depth, part in enumerate(path):
        if scope is None:
            return None
        candidates = scope.iter() if depth == 0 else (e for e in scope.iter() if e is not scope)
        scope = next((e for e in candidates if _local(e.tag) == part), None)
    return scope
