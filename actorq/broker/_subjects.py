"""NATS subjects and JetStream names: validation and wildcard matching.

A subject is a dot-separated list of non-empty tokens; a filter may use ``*`` (exactly one
token) and ``>`` (one or more trailing tokens) as whole tokens. The memory broker validates
every subject and name it is given the way nats-server does, so a subject that works in tests
also works against a server, and matches filters with the same rules (including whether two
filters *collide*, i.e. could both match one subject, which decides overlap errors).
"""

from __future__ import annotations

import functools
import re

_WHITESPACE = re.compile(r"\s")
_NAME_FORBIDDEN = re.compile(r"[\s.*>/\\]")
_BUCKET = re.compile(r"^[a-zA-Z0-9_-]+$")
_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
_KEY_FILTER = re.compile(r"^[-/_=.a-zA-Z0-9*>]+$")


@functools.lru_cache(maxsize=4096)
def _tokens(subject: str) -> tuple[str, ...]:
    return tuple(subject.split("."))


def subject_problem(subject: str, *, wildcards: bool) -> str | None:
    """Why ``subject`` is not a valid subject (or filter, with ``wildcards``), or None."""
    if not isinstance(subject, str) or not subject:
        return "a subject must be a non-empty string"
    if _WHITESPACE.search(subject):
        return "a subject may not contain whitespace"
    tokens = _tokens(subject)
    for index, token in enumerate(tokens):
        if not token:
            return "a subject may not have empty tokens (leading, trailing or double dots)"
        if token in ("*", ">"):
            if not wildcards:
                return "wildcards ('*', '>') are not allowed here"
            if token == ">" and index != len(tokens) - 1:
                return "'>' may only be the last token"
    return None


def is_valid_subject(subject: str) -> bool:
    """A literal subject that may be published to (no wildcards)."""
    return subject_problem(subject, wildcards=False) is None and not _has_wildcard(subject)


def _has_wildcard(subject: str) -> bool:
    return any(token in ("*", ">") for token in _tokens(subject))


def check_filter(subject: str, what: str = "subject") -> str:
    """Return ``subject`` if it is a valid filter, else raise ValueError naming it."""
    problem = subject_problem(subject, wildcards=True)
    if problem is not None:
        raise ValueError(f"invalid {what} {subject!r}: {problem}")
    return subject


def check_literal(subject: str, what: str = "subject") -> str:
    """Return ``subject`` if it is a valid literal subject, else raise ValueError naming it."""
    problem = subject_problem(subject, wildcards=False)
    if problem is None and _has_wildcard(subject):
        problem = "wildcards ('*', '>') are not allowed here"
    if problem is not None:
        raise ValueError(f"invalid {what} {subject!r}: {problem}")
    return subject


def matches(pattern: str, subject: str) -> bool:
    """Does the filter ``pattern`` match the literal ``subject``?"""
    if pattern == subject:
        return True
    return _matches(_tokens(pattern), _tokens(subject))


def _matches(pattern: tuple[str, ...], subject: tuple[str, ...]) -> bool:
    for index, token in enumerate(pattern):
        if token == ">":
            return len(subject) > index
        if index >= len(subject):
            return False
        if token != "*" and token != subject[index]:
            return False
    return len(pattern) == len(subject)


def matches_any(patterns: tuple[str, ...], subject: str) -> bool:
    """Does any of ``patterns`` match ``subject``? (An empty tuple matches everything.)"""
    if not patterns:
        return True
    return any(matches(pattern, subject) for pattern in patterns)


def collide(a: str, b: str) -> bool:
    """Could one literal subject match both filters ``a`` and ``b``?"""
    left, right = _tokens(a), _tokens(b)
    for index in range(max(len(left), len(right))):
        x = left[index] if index < len(left) else None
        y = right[index] if index < len(right) else None
        if x == ">" or y == ">":
            # '>' needs at least one token on its side; the other side has one (or its own '>').
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def subset(inner: str, outer: str) -> bool:
    """Is every subject matched by filter ``inner`` also matched by filter ``outer``?"""
    left, right = _tokens(inner), _tokens(outer)
    for index, token in enumerate(right):
        if token == ">":
            return len(left) > index
        if index >= len(left) or left[index] == ">":
            return False
        if token != "*" and (left[index] == "*" or left[index] != token):
            return False
    return len(left) == len(right)


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid stream or consumer name, or None."""
    if not isinstance(name, str) or not name:
        return "a name must be a non-empty string"
    if len(name) > 255:
        return "a name may have at most 255 characters"
    if _NAME_FORBIDDEN.search(name):
        return "a name may not contain whitespace, '.', '*', '>', '/' or '\\'"
    return None


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid stream/consumer name, else raise ValueError."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"invalid {what} name {name!r}: {problem}")
    return name


def check_bucket(bucket: str) -> str:
    """Return ``bucket`` if it is a valid KV bucket name, else raise ValueError."""
    if not isinstance(bucket, str) or not _BUCKET.match(bucket):
        raise ValueError(f"invalid bucket name {bucket!r}: use letters, digits, '_' and '-' only")
    return bucket


def check_key(key: str, *, wildcards: bool = False) -> str:
    """Return ``key`` if it is a valid KV key (or key filter), else raise ValueError."""
    pattern = _KEY_FILTER if wildcards else _KEY
    problem = None
    if not isinstance(key, str) or not pattern.match(key):
        problem = "use letters, digits and '-/_=.'" + (" (and '*', '>')" if wildcards else "")
    elif key.startswith(".") or key.endswith("."):
        problem = "a key may not start or end with '.'"
    elif wildcards:
        problem = subject_problem(key, wildcards=True)
    if problem is not None:
        raise ValueError(f"invalid key {key!r}: {problem}")
    return key
