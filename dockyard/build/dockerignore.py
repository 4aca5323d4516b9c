""".dockerignore patterns: which paths of a build context are left out.

Docker's rules, which this module follows: one pattern a line; a line starting with ``#`` is a
comment; surrounding whitespace is trimmed; ``!`` makes an exception (re-includes); patterns are
cleaned like Go's filepath.Clean and a leading ``/`` is dropped (everything is relative to the
context root). Matching is Go's filepath.Match (``*`` and ``?`` never cross ``/``, ``[...]``
classes, ``\\`` escapes) plus ``**`` for any number of directories. A pattern that matches a
directory matches everything below it. The last pattern that matches a path decides.

Pure: the caller reads the file and walks the context; ``can_skip_dir`` tells the walker when a
whole excluded directory can be skipped without missing an exception below it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dockyard.errdefs import InvalidArgument


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the '!'
    exception: bool
    regex: re.Pattern

    def matches(self, path: str) -> bool:
        """This pattern against ``path`` or any of its parent directories."""
        if self.regex.match(path):
            return True
        parts = path.split("/")
        return any(self.regex.match("/".join(parts[:i])) for i in range(1, len(parts)))


def _clean(path: str) -> str:
    # posixpath.normpath is filepath.Clean except for '//' at the start, which Go collapses
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _class(pattern: str, i: int, text: str) -> tuple[str, int]:
    """A ``[...]`` class starting at pattern[i] as a regex, and the index after it. Go's syntax:
    an optional ``^``, then characters or ``lo-hi`` ranges, ``\\`` escaping; not empty."""

    def bad(why):
        return InvalidArgument(f".dockerignore: syntax error in pattern {text!r}: {why}")

    def char(i):  # one (possibly escaped) class character; '-' and ']' must be escaped
        if i < len(pattern) and pattern[i] == "\\":
            i += 1
        elif i < len(pattern) and pattern[i] in "-]":
            raise bad("bad [ class")
        if i >= len(pattern):
            raise bad("unclosed [")
        return re.escape(pattern[i]), i + 1

    out, i = ["["], i + 1
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    while True:
        if i >= len(pattern):
            raise bad("unclosed [")
        if pattern[i] == "]" and len(out) > 1 and out[-1] != "^":
            return "".join(out) + "]", i + 1
        lo, i = char(i)
        if i < len(pattern) and pattern[i] == "-":
            hi, i = char(i + 1)
            out.append(f"{lo}-{hi}")
        else:
            out.append(lo)


def _regex(pattern: str, text: str) -> re.Pattern:
    """Compile one cleaned pattern. ``**`` matches across directories (``**/`` also matches
    nothing, so ``**/x`` matches ``x``); ``*`` and ``?`` stay within one path component."""
    if pattern.startswith("**") and not re.search(r"[*?\[\\]", pattern[2:]):
        # Docker matches a leading ** followed by plain text as a suffix: **.log matches a.log
        # and **/x also matches x itself
        rest = pattern[2:]
        alternatives = [".*" + re.escape(rest)]
        if rest.startswith("/"):
            alternatives.append(re.escape(rest[1:]))
        return re.compile("(?:" + "|".join(alternatives) + r")\Z", re.DOTALL)
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            cls, i = _class(pattern, i, text)
            out.append(cls)
            continue
        elif ch == "\\":
            i += 1
            if i >= n:
                raise InvalidArgument(f".dockerignore: syntax error in pattern {text!r}: trailing \\")
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error as e:  # e.g. a reversed range [z-a], which Docker's regexp rejects too
        raise InvalidArgument(f".dockerignore: syntax error in pattern {text!r}: {e}") from None


def parse(lines: Iterable[str]) -> list[Pattern]:
    """The patterns of a .dockerignore file, in order. InvalidArgument for a malformed one."""
    patterns = []
    for n, line in enumerate(lines):
        if n == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):  # only a '#' in the first column starts a comment
            continue
        text = line.strip()
        if not text:
            continue
        exception = text.startswith("!")
        if exception:
            text = text[1:].strip()
            if not text:
                raise InvalidArgument('.dockerignore: illegal exclusion pattern: "!"')
        text = _clean(text)
        if len(text) > 1 and text.startswith("/"):
            text = text[1:]
        patterns.append(Pattern(text, exception, _regex(text, text)))
    return patterns


def matcher(lines: Iterable[str]) -> Callable[[str], bool]:
    """``matcher(lines)(path)`` is True when ``path`` (relative to the context root, with '/')
    is excluded from the build context."""
    patterns = parse(lines)

    def excluded(path: str) -> bool:
        path = _clean(path).lstrip("/")
        result = False
        for p in patterns:
            # an exception only matters once something matched, and vice versa
            if p.exception == result and p.matches(path):
                result = not p.exception
        return result

    return excluded


def can_skip_dir(patterns: list[Pattern], directory: str) -> bool:
    """Whether a walker may skip everything below ``directory``, which it has found excluded.

    A pattern that matches the directory (or a parent) matches all below it, so only exception
    patterns that could match something strictly below can bring a path back. We check each one
    component by component; anything with ``**`` is assumed to reach below.
    """
    parts = _clean(directory).lstrip("/").split("/")
    for p in patterns:
        if not p.exception:
            continue
        comps = p.text.split("/")
        if "**" in p.text:
            return False
        if len(comps) <= len(parts):
            continue  # matches the directory itself or a parent at most
        try:
            reaches = all(_regex(c, p.text).match(d) for c, d in zip(comps, parts))
        except InvalidArgument:
            reaches = True  # a component we can't judge alone (a class holding '/'): keep walking
        if reaches:
            return False
    return True
