"""Checks of what a request to the labelling server carries: ids, names, free text, JSON bodies and query
parameters. Anything else is refused with an :class:`ApiError`, which the server answers as
``{"error": code, "message": ...}`` with its HTTP status; nothing a client sends reaches the store unchecked.
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
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class ApiError(Exception):
    """A client error answered as ``{"error": code, "message": ...}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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
    if any(ord(c) < 32 and c not in "\n\t" for c in value) or "\x7f" in value:
        raise ApiError(400, "invalid_field", f"{field} must not contain control characters")
    return value


def json_body(allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The request's JSON object; 415 if not JSON, 400 if malformed, not an object, missing or unknown fields."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    missing = sorted(required - data.keys())
    if missing:
        raise ApiError(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    unknown = sorted(data.keys() - allowed)
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}; allowed: {sorted(allowed)}")
    return data


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,18}", raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer in [{lo}, {hi}]")
    return int(raw)


def wait_arg() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    if not re.fullmatch(r"\d{1,3}(\.\d{1,6})?", raw) or float(raw) > MAX_WAIT:
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
