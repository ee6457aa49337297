"""Checks of what a request to the labelling server carries: ids, names, free text, JSON bodies and query
parameters. Anything else is refused with an :class:`ApiError`, which the server answers as
``{"error": code, "message": ...}`` with its HTTP status; nothing a client sends reaches the store unchecked.

Any text the server accepts must be text it can return (issue 9): a lone UTF-16 surrogate (the JSON escape
``\\ud800``) cannot be encoded as UTF-8, so it is refused in every string and key, as are NUL and the other control
characters (tab and newline excepted), and JSON nested deeper than :data:`MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from flask import request

ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")  # run and query ids
ENV_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./:+-]{0,127}")
LABELLER_RE = re.compile(r"\w(?:[\w .@+-]{0,62}[\w.@+-])?")  # a display name, 1-64 chars, no edge spaces
MAX_INSTRUCTION = 2000
MAX_META_BYTES = 8192
MAX_JSON_BYTES = 64 * 1024
MAX_WAIT = 30.0
MAX_JSON_DEPTH = 32  # of a meta object; deeper JSON is refused (it would also strain the parser's recursion)
MAX_SHOWN = 40  # characters of a client's text echoed in an error message
# Characters no stored text may hold: C0 controls but tab, newline and carriage return, DEL, lone surrogates.
BAD_CHAR_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class ApiError(Exception):
    """A client error answered as ``{"error": code, "message": ...}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def shown(value: object) -> str:
    """A client's text for an error message: ASCII-escaped (always encodable) and cut to :data:`MAX_SHOWN`."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:MAX_SHOWN]
    return ascii(cut) + ("..." if len(text) > MAX_SHOWN else "")


def bad_text(value: str) -> str | None:
    """Why ``value`` cannot be stored (a lone surrogate, a control character), or None if it can."""
    m = BAD_CHAR_RE.search(value)
    if m is None:
        return None
    kind = "a lone UTF-16 surrogate" if "\ud800" <= m.group() <= "\udfff" else "a control character"
    return f"{kind} ({ascii(m.group())[1:-1]}) at position {m.start()}"


def check_json_text(value: Any, field: str, depth: int = 0) -> None:
    """Refuse a JSON value holding a string or key that cannot be stored and returned, or nested too deeply."""
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, "invalid_field", f"{field} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        why = bad_text(value)
        if why is not None:
            raise ApiError(400, "invalid_field", f"{field} holds {why}")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_json_text(k, f"a key of {field}", depth + 1)
            check_json_text(v, f"{field}.{shown(k)}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_json_text(v, f"{field}[{i}]", depth + 1)


def check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ApiError(400, "invalid_field", f"{field} must be a string matching {ID_RE.pattern}")
    return value


def check_labeller(value: Any) -> str:
    if not isinstance(value, str) or not LABELLER_RE.fullmatch(value):
        raise ApiError(400, "invalid_field", "labeller must be a name of 1-64 letters, digits, spaces or ._@+-")
    return value


def check_meta(value: Any, field: str = "meta") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_field", f"{field} must be a JSON object")
    check_json_text(value, field)
    try:
        size = len(json.dumps(value, allow_nan=False))
    except ValueError as e:
        raise ApiError(400, "invalid_field", f"{field} must be plain JSON (no NaN/Infinity)") from e
    if size > MAX_META_BYTES:
        raise ApiError(400, "invalid_field", f"{field} is larger than {MAX_META_BYTES} bytes")
    return value


def check_text(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise ApiError(400, "invalid_field", f"{field} must be a string of at most {max_len} characters")
    why = bad_text(value)
    if why is not None or "\r" in value:
        raise ApiError(400, "invalid_field", f"{field} must be plain text: it holds {why or 'a carriage return'}")
    return value


def json_body(allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The request's JSON object; 415 if not JSON, 400 if malformed, not an object, missing or unknown fields."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # "[[[[..." nested thousands deep
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    missing = sorted(required - data.keys())
    if missing:
        raise ApiError(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    unknown = sorted(data.keys() - allowed)
    if unknown:  # the names are the client's text: echoed escaped and cut short
        names = ", ".join(shown(k) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ApiError(400, "unknown_field", f"unknown field(s): {names}; allowed: {sorted(allowed)}")
    return data


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,18}", raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer in [{lo}, {hi}]")
    return int(raw)


def wait_arg() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,6})?", raw) or float(raw) > MAX_WAIT:
        raise ApiError(400, "invalid_parameter", f"wait must be a number of seconds in [0, {MAX_WAIT:g}]")
    return float(raw)


def host_name(host_header: str) -> str:
    """``[::1]:5001`` -> ``::1``; ``localhost:5001`` -> ``localhost``."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
