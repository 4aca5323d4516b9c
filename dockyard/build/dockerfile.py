"""The Dockerfile language: text in, an AST of stages and instructions (or one DockerfileError) out.

This module owns the syntax only. It never reads files, runs anything or looks at images: the
builder passes the text, then walks the AST and asks for variable substitution with the
environment it knows at each step (``Instruction.expanded(env)``, ``stage_scopes``), because what
``$VAR`` means depends on the build state.

What it promises, matched against Docker (BuildKit's frontend) behaviour:
  * parser directives (``# escape=``, ``# syntax=``, ``# check=``) only at the very top;
  * line continuations with the active escape character; comment and empty lines inside a
    continuation are dropped (the empty ones noted in ``Dockerfile.warnings``);
  * ``ARG``/``ENV``/``LABEL`` word splitting, the JSON forms and their shell-form fallbacks;
  * heredocs on RUN/COPY/ADD (``<<EOF``, ``<<-EOF``, quoted names disable expansion);
  * the shell-word lexer Docker uses for substitution (``expand``, ``split_and_expand``).

Errors name the file and the instruction's first line: ``Dockerfile:3: unknown instruction: FORM
(did you mean FROM?)``. Nothing but DockerfileError may escape ``parse`` (a fuzz test holds this).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dockyard.errdefs import InvalidArgument

# Go's unicode.IsSpace, which Docker's lexers use; Python's isspace() also accepts \x1c-\x1f.
_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                   + "".join(chr(c) for c in range(0x2000, 0x200B)))
# Docker splits the instruction keyword and the whitespace-delimited forms on ASCII blanks only.
_RE_WS = re.compile(r"[\t\v\f\r ]+")
# "# name = value"; the value's trailing blanks are stripped by hand (a lazy regex would be
# quadratic on long lines)
_RE_DIRECTIVE = re.compile(r"#[ \t\n\f\r]*([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.*)\Z")
_DIRECTIVES = ("syntax", "escape", "check")
_RE_HEREDOC = re.compile(r"(\d*)<<(-?)[ \t\n\f\r]*([^<]*)\Z")
_RE_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*\Z")
_RE_ONBUILD = re.compile(r"^[ \t\n\f\r]*ONBUILD[ \t\n\f\r]*", re.IGNORECASE)


def _lstrip(s: str) -> str:
    i = 0
    while i < len(s) and s[i] in _SPACE:
        i += 1
    return s[i:]


def _strip(s: str) -> str:
    s = _lstrip(s)
    j = len(s)
    while j and s[j - 1] in _SPACE:
        j -= 1
    return s[:j]


class DockerfileError(InvalidArgument):
    """Bad Dockerfile text; the message is ``<file>:<line>: <what is wrong>``."""

    def __init__(self, reason: str, filename: str = "Dockerfile", line: int | None = None):
        self.reason, self.filename, self.line = reason, filename, line
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {reason}")


class _SyntaxError(DockerfileError):
    """Text Docker's line parser itself rejects (as opposed to checks it runs per instruction
    later). The difference shows in ONBUILD triggers: only these fail the parent's build."""


# ---------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Heredoc:
    """A here-document attached to RUN/COPY/ADD. ``content`` ends with a newline per line and
    already has leading tabs removed for ``<<-``; ``expand`` is False when the name was quoted.
    The builder substitutes variables in a COPY/ADD body when ``expand`` (with ``expand``); a RUN
    body goes to the shell as it is. ``fd`` is the descriptor of ``3<<EOF``, if given."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int | None = None


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount=...`` option set, as BuildKit defines the keys."""

    type: str  # bind | cache | tmpfs | secret | ssh
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool = False
    id: str | None = None
    sharing: str = "shared"  # cache only: shared | private | locked
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    size: str | None = None  # tmpfs only, as given ("64m")
    env: str | None = None  # secret only


@dataclass
class Instruction:
    """One instruction as written.

    ``cmd`` is the upper-case keyword. ``args`` holds the raw (unexpanded) words:
      RUN/CMD/ENTRYPOINT/SHELL  the JSON list when ``json`` else ``[shell text]``
      ENV/LABEL                 flat key/value pairs ``[k1, v1, k2, v2]`` (see ``pairs``)
      ARG                       words ``["name", "name=default"]`` (see ``arg_pairs``)
      HEALTHCHECK               ``["NONE"]`` or ``["CMD", *command]`` (``json`` is the command's)
      ONBUILD                   ``[trigger text]``; the parsed trigger is in ``trigger`` (None
                                when Docker would accept it here but fail it in the child build)
      FROM/COPY/ADD/VOLUME/EXPOSE  whitespace-separated words (or the JSON list)
      USER/WORKDIR/STOPSIGNAL/MAINTAINER  ``[rest of the line]``
    ``flags`` maps ``--name`` (without dashes) to a str, a bool, or a list for repeatable flags.
    """

    cmd: str
    args: list[str]
    flags: dict = field(default_factory=dict)
    json: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    mounts: list[Mount] = field(default_factory=list)
    trigger: Instruction | None = None
    escape: str = "\\"
    filename: str = "Dockerfile"

    def error(self, reason: str) -> DockerfileError:
        return DockerfileError(reason, self.filename, self.start_line or None)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """ENV/LABEL key/value pairs, raw."""
        return list(zip(self.args[::2], self.args[1::2]))

    @property
    def arg_pairs(self) -> list[tuple[str, str | None]]:
        """ARG declarations as (name, raw default or None)."""
        out = []
        for word in self.args:
            name, eq, default = word.partition("=")
            out.append((name, default if eq else None))
        return out

    def expand(self, word: str, env: Mapping[str, str]) -> str:
        """One word with variables substituted and quotes removed (errors carry this line)."""
        try:
            return expand(word, env, self.escape)
        except DockerfileError as e:
            raise self.error(f"{self.cmd}: {e.reason}") from None

    def expand_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        try:
            return split_and_expand(text, env, self.escape)
        except DockerfileError as e:
            raise self.error(f"{self.cmd}: {e.reason}") from None

    def expanded(self, env: Mapping[str, str]) -> list[str]:
        """``args`` after the substitution Docker applies to this instruction, if any.

        Expanded: ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, and ARG defaults
        (names are kept). Not expanded: RUN CMD ENTRYPOINT SHELL HEALTHCHECK (the shell in the
        container does it), MAINTAINER, and ONBUILD (its trigger expands in the child build).
        EXPOSE splits an expanded word on whitespace (``EXPOSE $PORTS`` with PORTS="80 443").
        Flags (``--from``, ``--chown``, ``--platform``, mount options) are expanded by the builder
        with ``expand`` when it uses them.
        """
        if self.cmd in ("ADD", "COPY", "ENV", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"):
            return [self.expand(a, env) for a in self.args]
        if self.cmd == "FROM":  # the image only; a stage name is never expanded
            return [self.expand(self.args[0], env), *self.args[1:]]
        if self.cmd == "EXPOSE":
            return [w for a in self.args for w in self.expand_words(a, env)]
        if self.cmd == "ARG":
            return [name if d is None else f"{name}={self.expand(d, env)}"
                    for name, d in self.arg_pairs]
        return list(self.args)


@dataclass
class Stage:
    """A build stage: its FROM line and what follows up to the next FROM."""

    index: int
    base: str  # raw image word of FROM (may hold $VARs: expand with the global ARG scope)
    name: str | None  # lower-cased ``AS`` name
    platform: str | None  # raw ``--platform`` value
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    stages: list[Stage]
    global_args: list[Instruction]  # ARGs before the first FROM (usable in FROM lines only)
    directives: dict[str, str]
    escape: str = "\\"
    filename: str = "Dockerfile"
    warnings: list[str] = field(default_factory=list)

    def stage(self, ref: str | int) -> Stage:
        """A stage by name (case-insensitive) or index; DockerfileError if there is none."""
        if isinstance(ref, int) or _RE_INDEX.match(ref):
            i = int(ref)
            if 0 <= i < len(self.stages):
                return self.stages[i]
        else:
            for st in self.stages:
                if st.name == ref.lower():
                    return st
        raise DockerfileError(f"target stage {ref!r} could not be found", self.filename)


# ---------------------------------------------------------------- the shell-word lexer


class _Words:
    """Collects words the way Docker's ProcessWords does: unquoted whitespace (including the
    whitespace produced by expanding an unquoted $VAR) splits; quoted text never does."""

    def __init__(self):
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def char(self, ch: str):
        if ch in _SPACE:
            if self.in_word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.raw(ch)

    def string(self, s: str):
        for ch in s:
            self.char(ch)

    def raw(self, s: str):
        # quoted text, even "", makes a word
        self.word += s
        self.in_word = True

    def result(self) -> list[str]:
        return self.words + [self.word] if self.in_word else self.words


def _glob_regex(pattern: str, escape: str) -> str:
    """Shell pattern (for ${v#p}, ${v%p}, ${v/p/r}) to a regex: * ? and escaped characters."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == escape and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


class _Lexer:
    """Docker's shell-word lexer over one string. Single quotes are literal; double quotes allow
    ``$`` and escape only ``"``, ``$`` and the escape character; unquoted, the escape character
    makes the next character literal (a trailing one is dropped)."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str = "\\", *,
                 raw_quotes=False, raw_escapes=False, skip_unset=False):
        self.s, self.pos, self.env, self.esc = text, 0, env, escape
        self.raw_quotes, self.raw_escapes, self.skip_unset = raw_quotes, raw_escapes, skip_unset

    def peek(self) -> str | None:
        return self.s[self.pos] if self.pos < len(self.s) else None

    def next(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def process(self, stop: str | None = None) -> tuple[str, list[str]]:
        result, words = [], _Words()
        while (ch := self.peek()) is not None:
            if stop is not None and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch == "'":
                tmp = self.single_quote()
                words.raw(tmp)
            elif ch == '"':
                tmp = self.double_quote()
                words.raw(tmp)
            elif ch == "$":
                tmp = self.dollar()
                words.string(tmp)
            else:
                tmp = self.next()
                if tmp == self.esc:
                    if self.raw_escapes:
                        words.raw(tmp)
                        result.append(tmp)
                    tmp = self.next()
                    if tmp is None:
                        break
                    words.raw(tmp)
                else:
                    words.char(tmp)
            result.append(tmp)
        if stop is not None:
            raise DockerfileError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        q = self.next()
        out = [q] if self.raw_quotes else []
        while True:
            ch = self.next()
            if ch is None:
                raise DockerfileError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        q = self.next()
        out = [q] if self.raw_quotes else []
        while True:
            ch = self.peek()
            if ch is None:
                raise DockerfileError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.esc:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt is None:
                    continue  # a trailing escape inside quotes is dropped
                if nxt in ('"', "$", self.esc):
                    ch = self.next()
                # any other escaped character keeps the escape character too
            out.append(ch)

    def name(self) -> str:
        out = ""
        while (ch := self.peek()) is not None:
            if not out and ch.isdecimal():  # positional parameters: $1, $12
                while (ch := self.peek()) is not None and ch.isdecimal():
                    out += self.next()
                return out
            if not out and ch in "*#@?-$!":  # special parameters: never set in a build
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            out += self.next()
        return out

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def braced_word(self) -> str:
        try:
            word, _ = self.process("}")
        except DockerfileError:
            if self.peek() is None:
                raise DockerfileError("syntax error: missing '}'") from None
            raise
        return word

    def dollar(self) -> str:
        self.next()  # $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.skip_unset else ""
            return value
        self.next()  # {
        ch = self.peek()
        if ch is None:
            raise DockerfileError("syntax error: missing '}'")
        if ch in "{}:":
            raise DockerfileError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        value = self.lookup(name)
        if ch is None:
            raise DockerfileError("syntax error: missing '}'")
        if ch == "}":
            if value is None:
                return "${" + name + "}" if self.skip_unset else ""
            return value
        if ch == ":":
            # the ':' forms treat an empty value like an unset one
            mod = self.next()
            word = self.braced_word()
            if mod == "-":
                return value or word
            if mod == "+":
                return word if value else ""
            if mod == "?":
                if not value:
                    raise DockerfileError(f"{name}: {word or 'is not allowed to be unset or empty'}")
                return value
            raise DockerfileError(f"unsupported modifier ({mod}) in substitution")
        if ch in "-+?":
            word = self.braced_word()
            if ch == "-":
                return word if value is None else value
            if ch == "+":
                return "" if value is None else word
            if value is None:
                raise DockerfileError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        if ch in "#%":
            # ${v#p} ${v##p} remove the shortest/longest matching prefix; % the suffix
            longest = self.peek() == ch
            if longest:
                self.next()
            pattern = re.compile(_glob_regex(self.braced_word(), self.esc), re.DOTALL)
            value = value or ""
            cuts = range(len(value) + 1)
            for n in (reversed(cuts) if longest else cuts):
                part = value[:n] if ch == "#" else value[len(value) - n:]
                if pattern.fullmatch(part):
                    return value[n:] if ch == "#" else value[:len(value) - n]
            return value
        if ch == "/":
            # ${v/p/r} replaces the first (longest) match, ${v//p/r} every match
            every = self.peek() == "/"
            if every:
                self.next()
            try:
                pattern, _ = self.process("/")
            except DockerfileError:
                raise DockerfileError("syntax error: missing '/' in ${}") from None
            repl = self.braced_word()
            regex = re.compile(_glob_regex(pattern, self.esc), re.DOTALL)
            if not pattern:
                return value or ""
            return regex.sub(lambda m: repl, value or "", count=0 if every else 1)
        raise DockerfileError(f"unsupported modifier ({ch}) in substitution")


def _lex(text: str, env: Mapping[str, str], escape: str, **options) -> tuple[str, list[str]]:
    try:
        return _Lexer(text, env, escape, **options).process()
    except RecursionError:
        # the lexer recurses once per nested ${...}; Python's stack is the limit
        raise DockerfileError("variable substitution nested too deeply") from None


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Substitute ``$VAR``/``${VAR...}`` in one word and remove its quoting, as Docker does for
    ENV values, COPY paths, WORKDIR... Whitespace is kept. Raises DockerfileError (no location)."""
    return _lex(word, env, escape)[0]


def split_and_expand(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Like ``expand`` but split into words on unquoted whitespace, including whitespace that an
    unquoted ``$VAR`` expands to (``"$A"`` stays one word)."""
    return _lex(text, env, escape)[1]


# ------------------------------------------------------------------- line-level parsing


def _parse_words(rest: str, escape: str) -> list[str]:
    """Split ENV/LABEL/ARG text into words on unquoted whitespace, keeping quotes and escapes in
    the words (expansion removes them later). Single quotes can't be escaped into."""
    words, word, blank_ok = [], "", False
    quote, i, n = None, 0, len(rest)
    while i < n:
        ch = rest[i]
        if quote is None:
            if ch in _SPACE:
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                i += 1
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == n:
                    break  # a trailing escape is dropped
                word += ch
                i += 1
                ch = rest[i]
            word += ch
        else:
            if ch == quote:
                quote = None
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break
                word += ch
                i += 1
                ch = rest[i]
            word += ch
        i += 1
    if blank_ok or word:
        words.append(word)
    return words


def _extract_flags(rest: str) -> tuple[list[str], str]:
    """Take the leading ``--flag[=value]`` words off an instruction's arguments. Quotes and
    backslashes inside a flag word are interpreted; a bare ``--`` ends the flags."""
    flags, i, n = [], 0, len(rest)
    while True:
        while i < n and rest[i] in _SPACE:
            i += 1
        if i >= n or not rest.startswith("--", i):
            return flags, rest[i:]
        word, quote, blank_ok = "", None, False
        while i < n and (quote or rest[i] not in _SPACE):
            ch = rest[i]
            if quote is None and ch in "'\"":
                quote, blank_ok = ch, True
            elif quote is not None and ch == quote:
                quote = None
            elif ch == "\\":
                i += 1
                if i < n:
                    word += rest[i]
            else:
                word += ch
            i += 1
        if word == "--":
            return flags, _lstrip(rest[i:])
        if word or blank_ok:
            flags.append(word)


# kind of each flag: str, bool, or list (repeatable)
_FLAGS: dict[str, dict[str, type]] = {
    "FROM": {"platform": str},
    "RUN": {"mount": list, "network": str, "security": str},
    "COPY": {"from": str, "chown": str, "chmod": str, "link": bool, "parents": bool,
             "exclude": list},
    "ADD": {"chown": str, "chmod": str, "link": bool, "keep-git-dir": bool, "checksum": str,
            "exclude": list, "unpack": bool},
    "HEALTHCHECK": {"interval": str, "timeout": str, "start-period": str, "start-interval": str,
                    "retries": str},
}


def _parse_flags(cmd: str, words: list[str]) -> dict:
    known = _FLAGS.get(cmd, {})
    flags: dict = {}
    for word in words:
        name, eq, value = word[2:].partition("=")
        kind = known.get(name)
        if kind is None:
            raise DockerfileError(f"{cmd}: unknown flag: --{name}")
        if kind is list:
            if not eq:
                raise DockerfileError(f"{cmd}: missing a value on flag --{name}")
            flags.setdefault(name, []).append(value)
            continue
        if name in flags:
            raise DockerfileError(f"{cmd}: duplicate flag specified: --{name}")
        if kind is bool:
            if eq and value.lower() not in ("true", "false"):
                raise DockerfileError(f"{cmd}: expecting boolean value for flag --{name}, not: {value}")
            flags[name] = not eq or value.lower() == "true"
        else:
            if not eq:
                raise DockerfileError(f"{cmd}: missing a value on flag --{name}")
            flags[name] = value
    return flags


_NOT_JSON = object()


def _json_list(rest: str):
    """The JSON-array form, or _NOT_JSON when the text isn't a JSON array (the caller falls back
    to its shell/list form, as Docker does). An array of anything but strings is an error."""
    if not rest.startswith("["):
        return _NOT_JSON

    def no_constants(name):
        raise ValueError(name)  # Go's JSON has no NaN/Infinity: not JSON at all

    try:
        # Docker decodes one JSON value and ignores what follows it: CMD ["a"] tail is ["a"]
        # (recorded from Docker 20.10, see tests/build/fixtures)
        value, _ = json.JSONDecoder(parse_constant=no_constants).raw_decode(rest)
    except (ValueError, RecursionError):
        return _NOT_JSON
    if not isinstance(value, list):
        return _NOT_JSON
    if not all(isinstance(v, str) for v in value):
        raise _SyntaxError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _json_or_shell(rest: str) -> tuple[list[str], bool]:
    rest = _lstrip(rest)
    value = _json_list(rest)
    if value is not _NOT_JSON:
        return value, True
    return ([rest] if rest else []), False


def _json_or_words(rest: str) -> tuple[list[str], bool]:
    value = _json_list(_lstrip(rest))
    if value is not _NOT_JSON:
        return value, True
    return _ws_words(rest), False


def _ws_words(rest: str) -> list[str]:
    return [w for w in _RE_WS.split(rest) if w] if rest else []


def _name_values(cmd: str, rest: str, escape: str) -> list[str]:
    """ENV/LABEL: ``k=v k2=v2`` or the legacy ``k v with spaces`` (chosen by whether the first
    word holds an '=')."""
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _RE_WS.split(rest, maxsplit=1)
        if len(parts) < 2 or not parts[1]:
            raise _SyntaxError(f"{cmd} {parts[0]} has no value: use {cmd} {parts[0]}=<value>")
        return [parts[0], parts[1]]
    out = []
    for word in words:
        if "=" not in word:
            raise _SyntaxError(f"{cmd}: can't find = in {word!r}: must be of the form name=value")
        key, _, value = word.partition("=")
        out += [key, value]
    return out


_ALL_CMDS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
             "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
             "WORKDIR")


def _distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _unknown(keyword: str) -> DockerfileError:
    word, hint = keyword.upper(), ""
    if 2 < len(word) < 16:  # a typo of a keyword; bounded so a huge word costs nothing
        best = min(_ALL_CMDS, key=lambda c: _distance(word, c))
        hint = f" (did you mean {best}?)" if _distance(word, best) <= 2 else ""
    return DockerfileError(f"unknown instruction: {keyword}{hint}")


def _parse_instruction(line: str, escape: str) -> Instruction:
    """One logical line (continuations joined) to an Instruction, without heredocs or location.
    Raises DockerfileError without location; the caller adds it."""
    parts = _RE_WS.split(_strip(line), maxsplit=1)
    keyword = parts[0]
    # case-insensitive like Docker's (it lower-cases, then looks up); upper() alone would also
    # accept exotic spellings such as a long s
    cmd = keyword.lower().upper() if keyword.lower().isascii() else keyword
    flag_words, rest = _extract_flags(parts[1]) if len(parts) == 2 else ([], "")
    if cmd not in _ALL_CMDS:
        raise _unknown(keyword)
    inst = Instruction(cmd, [], _parse_flags(cmd, flag_words), original=line, escape=escape)

    if cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        inst.args, inst.json = _json_or_shell(rest)
        if cmd == "SHELL" and not inst.json:
            raise DockerfileError("SHELL requires the arguments to be in JSON form, "
                                  'e.g. SHELL ["/bin/sh", "-c"]')
        # a bare CMD/ENTRYPOINT is accepted by Docker (it becomes just the shell, ["/bin/sh", "-c"])
        if not inst.args and cmd in ("RUN", "SHELL"):
            raise DockerfileError(f"{cmd} requires at least one argument")
        if cmd == "RUN":
            _check_run_flags(inst)
    elif cmd in ("ENV", "LABEL"):
        inst.args = _name_values(cmd, rest, escape)
        if not inst.args:
            raise DockerfileError(f"{cmd} requires at least one argument, e.g. {cmd} name=value")
    elif cmd == "ARG":
        inst.args = _parse_words(rest, escape)
        if not inst.args:
            raise DockerfileError("ARG requires at least one argument")
        for name, _ in inst.arg_pairs:
            if not name:
                raise DockerfileError("ARG names can not be blank")
    elif cmd in ("FROM", "EXPOSE"):
        inst.args = _ws_words(rest)
        if cmd == "EXPOSE" and not inst.args:
            raise DockerfileError("EXPOSE requires at least one argument")
        if cmd == "FROM":
            _check_from(inst)
    elif cmd in ("COPY", "ADD", "VOLUME"):
        inst.args, inst.json = _json_or_words(rest)
        if cmd == "VOLUME":
            if not inst.args:
                raise DockerfileError("VOLUME requires at least one argument")
            if any(not _strip(a) for a in inst.args):
                raise DockerfileError("VOLUME specified can not be an empty string")
        elif len(inst.args) < 2:
            raise DockerfileError(f"{cmd} requires at least two arguments: source(s) and destination")
    elif cmd in ("USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"):
        if not rest:
            raise DockerfileError(f"{cmd} requires exactly one argument")
        inst.args = [rest]
    elif cmd == "HEALTHCHECK":
        _parse_healthcheck(inst, rest)
    elif cmd == "ONBUILD":
        if not rest:
            raise DockerfileError("ONBUILD requires at least one argument")
        # checked before parsing the trigger, so ONBUILD ONBUILD ... can't recurse
        first = _RE_WS.split(rest, maxsplit=1)[0].upper()
        if first == "ONBUILD":
            raise DockerfileError("chaining ONBUILD via ONBUILD ONBUILD isn't allowed")
        if first in ("FROM", "MAINTAINER"):
            raise DockerfileError(f"{first} isn't allowed as an ONBUILD trigger")
        try:
            inst.trigger = _parse_instruction(rest, escape)
        except _SyntaxError:
            raise
        except DockerfileError:
            # Docker checks a trigger (keyword, arguments, flags) only in the build that runs
            # it, so ONBUILD FORM x builds; the child's builder re-parses args[0] and fails then
            inst.trigger = None
        inst.args = [_RE_ONBUILD.sub("", line)]
    return inst


def _check_from(inst: Instruction):
    args = inst.args
    if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "as"):
        raise DockerfileError("FROM requires either one argument, or three: FROM <image> AS <name>")
    if len(args) == 3 and not _RE_STAGE_NAME.match(args[2].lower()):
        raise DockerfileError(f"invalid name for build stage: {args[2]!r}, name can't start with a "
                              "number or contain symbols")


def _check_run_flags(inst: Instruction):
    for name, allowed in (("network", ("default", "none", "host")),
                          ("security", ("sandbox", "insecure"))):
        value = inst.flags.get(name)
        if value is not None and "$" not in value and value not in allowed:
            raise DockerfileError(f"RUN: --{name}={value}: must be one of {', '.join(allowed)}")
    inst.mounts = [parse_mount(v) for v in inst.flags.get("mount", [])]


_GO_UNITS = {"ns": 1, "us": 1000, "\u00b5s": 1000, "\u03bcs": 1000, "ms": 10**6, "s": 10**9,
             "m": 60 * 10**9, "h": 3600 * 10**9}
_RE_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """A Go duration string ("30s", "1m30s", "1.5h", "300ms", "0") in nanoseconds."""
    s, sign = text, 1
    if s[:1] in ("-", "+"):
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0, 0
    while pos < len(s):
        m = _RE_DURATION_PART.match(s, pos)
        if not m or not (m.group(1) or m.group(2)):
            raise ValueError(f"invalid duration {text!r}")
        whole, frac, unit = m.group(1) or "0", m.group(2) or "", m.group(3)
        total += int(whole) * _GO_UNITS[unit]
        if frac:
            total += int(frac) * _GO_UNITS[unit] // 10 ** len(frac)
        pos = m.end()
    return sign * total


def _parse_healthcheck(inst: Instruction, rest: str):
    # Docker splits the type off at the first whitespace of any kind
    m = re.match(r"(\S*)\s*(.*)\Z", rest, re.DOTALL)
    kind, command = m.group(1), m.group(2)
    if not kind:
        raise DockerfileError("HEALTHCHECK requires an argument: CMD <command> or NONE")
    kind = kind.upper()
    if kind == "NONE":
        if command or inst.flags:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        inst.args = ["NONE"]
        return
    if kind != "CMD":
        raise DockerfileError(f"unknown type {kind!r} in HEALTHCHECK (try CMD)")
    args, inst.json = _json_or_shell(command)
    if not args:
        raise DockerfileError("missing command after HEALTHCHECK CMD")
    inst.args = ["CMD", *args]
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = inst.flags.get(name)
        if value is None or "$" in value:
            continue
        try:
            ns = parse_duration(value)
        except ValueError:
            raise DockerfileError(f"HEALTHCHECK --{name}={value}: not a duration like 30s or 1m30s") from None
        # Docker rejects anything below its 1ms minimum, 0s included (recorded from Docker 20.10)
        if ns < 10**6:
            raise DockerfileError(f"HEALTHCHECK --{name}={value}: must be at least 1ms")
    retries = inst.flags.get("retries")
    if retries is not None and "$" not in retries and not re.fullmatch(r"\+?0*[1-9][0-9]*", retries):
        raise DockerfileError(f"HEALTHCHECK --retries={retries}: must be a whole number, at least 1")


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_MOUNT_BOOL = {"readonly": "readonly", "ro": "readonly", "readwrite": "readwrite",
               "rw": "readwrite", "required": "required"}


def _csv_fields(text: str) -> list[str]:
    """One CSV record (Go encoding/csv rules: "..." quotes a field, "" inside is a quote)."""
    fields, cur, i, n = [], "", 0, len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            while True:
                if i >= n:
                    raise DockerfileError(f"--mount={text}: unterminated quote")
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        cur += '"'
                        i += 2
                        continue
                    i += 1
                    break
                cur += text[i]
                i += 1
            if i < n and text[i] != ",":
                raise DockerfileError(f"--mount={text}: extraneous text after a quoted field")
        else:
            while i < n and text[i] != ",":
                cur += text[i]
                i += 1
        fields.append(cur)
        if i >= n:
            return fields
        cur, i = "", i + 1


def parse_mount(value: str, env: Mapping[str, str] | None = None, escape: str = "\\") -> Mount:
    """A ``RUN --mount`` value to a Mount. With ``env`` the option values are expanded first (the
    builder does that; the parser validates with env=None so literal mistakes fail early)."""
    opts: dict = {"type": "bind"}
    seen_ro = None
    for fld in _csv_fields(value):
        key, eq, val = fld.partition("=")
        key = key.strip().lower()
        if not eq:
            if key not in _MOUNT_BOOL:
                raise DockerfileError(f"--mount={value}: {key!r} needs a value ({key}=...)")
            val = "true"
        elif env is not None:
            val = expand(val, env, escape)
        if key in _MOUNT_BOOL:
            if val.lower() not in ("true", "false", "1", "0"):
                raise DockerfileError(f"--mount={value}: {key} must be true or false, not {val!r}")
            on = val.lower() in ("true", "1")
            if _MOUNT_BOOL[key] == "required":
                opts["required"] = on
            else:
                seen_ro = on if _MOUNT_BOOL[key] == "readonly" else not on
        elif key == "type":
            if val not in _MOUNT_TYPES and "$" not in val:
                raise DockerfileError(f"--mount={value}: unsupported mount type {val!r} "
                                      f"(one of {', '.join(_MOUNT_TYPES)})")
            opts["type"] = val
        elif key in ("target", "dst", "destination"):
            opts["target"] = val
        elif key in ("source", "src"):
            opts["source"] = val
        elif key == "from":
            opts["from_"] = val
        elif key in ("id", "size", "env"):
            opts[key] = val
        elif key == "sharing":
            if val not in ("shared", "private", "locked") and "$" not in val:
                raise DockerfileError(f"--mount={value}: sharing must be shared, private or locked")
            opts["sharing"] = val
        elif key in ("mode", "uid", "gid"):
            try:
                opts[key] = int(val, 8 if key == "mode" else 10)
            except ValueError:
                if "$" in val and env is None:
                    continue  # expanded and checked by the builder
                kind = "an octal number" if key == "mode" else "a number"
                raise DockerfileError(f"--mount={value}: {key} must be {kind}, not {val!r}") from None
        else:
            raise DockerfileError(f"--mount={value}: unexpected key {key!r}")
    kind = opts["type"]
    if kind in ("bind", "cache", "tmpfs") and not opts.get("target"):
        raise DockerfileError(f"--mount={value}: a {kind} mount needs target=<path in the container>")
    if kind == "secret" and not opts.get("id") and not opts.get("target"):
        raise DockerfileError(f"--mount={value}: a secret mount needs id= or target=")
    # bind mounts are read-only unless asked otherwise; every other type is writable
    opts["readonly"] = (kind == "bind") if seen_ro is None else seen_ro
    return Mount(**opts)


# --------------------------------------------------------------------- the file


def _heredocs_in(line: str) -> list[tuple[str, bool, bool, int | None]]:
    """The heredoc markers on an instruction line: (name, expand, chomp, fd). Docker lexes the
    line with quotes and escapes kept, so a marker inside quotes isn't one; a name with any
    quoting (``<<"EOF"``, ``<<'EOF'``) turns expansion of the body off."""
    try:
        words = _lex(line, {}, "\\", raw_quotes=True, raw_escapes=True)[1]
    except DockerfileError:
        return []  # Docker ignores a line it can't lex here
    found = []
    for word in words:
        m = _RE_HEREDOC.match(word)
        if not m or not m.group(3):
            continue
        rest = m.group(3)
        try:
            cooked = _lex(rest, {}, "\\", skip_unset=True)[1]
            raw = _lex(rest, {}, "\\", raw_quotes=True, skip_unset=True)[1]
        except DockerfileError:
            continue
        if len(cooked) != 1 or len(raw) != 1:
            continue
        quotes = lambda w: w.count("'") + w.count('"')  # noqa: E731
        found.append((cooked[0], quotes(cooked[0]) == quotes(raw[0]), m.group(2) == "-",
                      int(m.group(1)) if m.group(1) else None))
    return found


def _directives(lines: list[str], filename: str) -> tuple[dict[str, str], str]:
    """Parser directives: ``# name=value`` lines at the very top. The first line that isn't a
    known directive (an instruction, an empty line, any other comment) ends them."""
    found: dict[str, str] = {}
    for lineno, line in enumerate(lines, 1):
        m = _RE_DIRECTIVE.match(_lstrip(line))
        value = m.group(2).rstrip(" \t\n\f\r") if m else ""
        if not value or m.group(1).lower() not in _DIRECTIVES:
            break
        name = m.group(1).lower()
        if name in found:
            raise DockerfileError(f"only one {name} parser directive can be used", filename, lineno)
        if name == "escape" and value not in ("\\", "`"):
            raise DockerfileError(f"invalid escape token {value!r}: must be \\ or `", filename, lineno)
        found[name] = value
    return found, found.get("escape", "\\")


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text. Raises DockerfileError, and nothing else, on any bad input."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    directives, escape = _directives(lines, filename)
    continuation = re.compile(re.escape(escape) + r"[ \t]*\Z")
    warnings: list[str] = []

    def trim_continuation(s: str) -> tuple[str, bool]:
        # an escaped escape character at the end (``\\``) is literal, not a continuation: Docker
        # 20.10 builds "LABEL a=x\\" + "LABEL b=y" as two labels (fixtures/docker_recorded.json)
        m = continuation.search(s)
        if m and not s[:m.start()].endswith(escape):
            return s[:m.start()], True
        return s, False

    def is_comment(s: str) -> bool:
        return _lstrip(s).startswith("#")

    instructions: list[Instruction] = []
    i, n = 0, len(lines)
    while i < n:
        first = _lstrip(lines[i])
        i += 1
        start = i
        if first.startswith("#"):
            continue  # comments (directives included) are not instructions
        line, more = trim_continuation(first)
        if not more and not line:
            continue
        empty_continuation = False
        while more and i < n:
            raw = lines[i]
            i += 1
            # inside a continuation Docker drops comment lines and empty lines entirely
            if is_comment(raw):
                continue
            if not _lstrip(raw):
                empty_continuation = True
                continue
            part, more = trim_continuation(raw)
            line += part
        if empty_continuation:
            warnings.append(f"{filename}:{start}: empty continuation line (Docker will reject "
                            "these in a future release)")
        if not _strip(line):
            raise DockerfileError("unexpected end of file after a line continuation", filename, start)
        try:
            inst = _parse_instruction(line, escape)
        except DockerfileError as e:
            reason = e.reason
            if more:  # the file ended inside this continuation
                reason += " (the file ends in a line continuation)"
            raise DockerfileError(reason, filename, start) from None
        inst.start_line, inst.filename = start, filename
        if inst.trigger:
            inst.trigger.start_line, inst.trigger.filename = start, filename
            inst.trigger.end_line = start
        if inst.cmd in ("RUN", "COPY", "ADD") and not inst.json:
            for name, expands, chomp, fd in _heredocs_in(line):
                body, terminated = [], False
                while i < n:
                    raw = lines[i]
                    i += 1
                    if (raw.lstrip("\t") if chomp else raw) == name:
                        terminated = True
                        break
                    body.append((raw.lstrip("\t") if chomp else raw) + "\n")
                if not terminated:
                    raise DockerfileError(f"unterminated heredoc: no line {name!r} ends the "
                                          f"<<{name} started here", filename, start)
                inst.heredocs.append(Heredoc(name, "".join(body), expands, chomp, fd))
            if inst.cmd in ("COPY", "ADD") and _RE_HEREDOC.match(inst.args[-1]):
                raise inst.error(f"{inst.cmd}: a heredoc can't be the destination")
        inst.end_line = i
        instructions.append(inst)
    return _stages(instructions, directives, escape, filename, warnings)


def _stages(instructions, directives, escape, filename, warnings) -> Dockerfile:
    if not instructions:
        raise DockerfileError("the Dockerfile has no instructions", filename)
    df = Dockerfile([], [], directives, escape, filename, warnings)
    names: dict[str, int] = {}
    for inst in instructions:
        if inst.cmd == "FROM":
            name = inst.args[2].lower() if len(inst.args) == 3 else None
            if name is not None:
                if name in names:
                    raise inst.error(f"duplicate stage name {name!r} (also used by stage {names[name]})")
                names[name] = len(df.stages)
            df.stages.append(Stage(len(df.stages), inst.args[0], name, inst.flags.get("platform"), inst))
        elif df.stages:
            df.stages[-1].instructions.append(inst)
        elif inst.cmd == "ARG":
            df.global_args.append(inst)
        else:
            raise inst.error(f"{inst.cmd} before the first FROM: only ARG may come before FROM "
                             "(no build stage in current context)")
    if not df.stages:
        raise DockerfileError("no FROM instruction: a Dockerfile needs at least one build stage", filename)
    return df


# ------------------------------------------------------------ stages and ARG scoping


_RE_INDEX = re.compile(r"[0-9]+\Z")


def resolve_stage_ref(df: Dockerfile, ref: str) -> int | None:
    """What ``FROM ref`` / ``COPY --from=ref`` / ``RUN --mount=from=ref`` names: a stage index,
    or None for an image reference. A number is always a stage index (it must exist); a name is a
    stage if any stage has it, earlier or later (BuildKit orders stages by their dependencies)."""
    if _RE_INDEX.match(ref):
        if int(ref) >= len(df.stages):
            raise DockerfileError(f"invalid stage index {ref}: the Dockerfile has "
                                  f"{len(df.stages)} stage(s)", df.filename)
        return int(ref)
    for st in df.stages:
        if st.name is not None and st.name == ref.lower():
            return st.index
    return None


def stage_dependencies(df: Dockerfile, stage: Stage) -> list[tuple[Instruction, int]]:
    """The stages ``stage`` uses, from its literal references (FROM, COPY --from, RUN --mount
    from=); references holding ``$`` are left to the builder, which expands them first."""
    refs = [(stage.from_instruction, stage.base)]
    for inst in stage.instructions:
        if inst.flags.get("from") is not None:
            refs.append((inst, inst.flags["from"]))
        refs += [(inst, m.from_) for m in inst.mounts if m.from_]
    deps = []
    for inst, ref in refs:
        # FROM x AS x names the image x, not the stage itself
        if "$" in ref or (inst is stage.from_instruction and ref.lower() == stage.name):
            continue
        try:
            index = resolve_stage_ref(df, ref)
        except DockerfileError as e:
            raise inst.error(e.reason) from None
        if index is not None:
            deps.append((inst, index))
    return deps


def validate_stages(df: Dockerfile, target: str | None = None) -> Stage:
    """Check ``--target`` and every literal stage reference, including cycles (a stage that
    needs itself, directly or through others); return the stage to build."""
    stage = df.stage(target) if target else df.stages[-1]
    deps = {st.index: stage_dependencies(df, st) for st in df.stages}
    done: set[int] = set()

    def visit(i: int, path: list[int]):
        if i in done:
            return
        for inst, j in deps[i]:
            if j in path or j == i:
                names = " -> ".join(df.stages[k].name or str(k) for k in [*path, i, j])
                raise inst.error(f"circular dependency between build stages: {names}")
            visit(j, [*path, i])
        done.add(i)

    for st in df.stages:
        visit(st.index, [])
    return stage


def global_scope(df: Dockerfile, build_args: Mapping[str, str] = {},
                 predefined: Mapping[str, str] = {}) -> dict[str, str]:
    """The ARG values FROM lines expand with: ARGs before the first FROM, in order, each default
    expanded with the ones before it; a --build-arg overrides a default. ``predefined`` holds the
    automatic ARGs (BUILDPLATFORM, TARGETPLATFORM...), visible here without declaring them."""
    scope = dict(predefined)
    for inst in df.global_args:
        for name, default in inst.arg_pairs:
            if name in build_args:
                scope[name] = build_args[name]
            elif default is not None:
                scope[name] = inst.expand(default, scope)
    return scope


def stage_scopes(stage: Stage, base_env: Mapping[str, str], global_values: Mapping[str, str],
                 build_args: Mapping[str, str] = {}) -> Iterator[tuple[Instruction, dict[str, str]]]:
    """Yield each instruction of ``stage`` with the variables its words expand in.

    ``base_env`` is the base image's ENV. Inside a stage, a global ARG is visible only once the
    stage redeclares it (``ARG NAME`` takes the global value). An ARG's value is the --build-arg,
    else its default, else the global value. ENV (the image's or the stage's) always wins over an
    ARG of the same name. All words of one ENV/ARG expand with the scope from before it."""
    env, args = dict(base_env), {}
    for inst in stage.instructions:
        scope = {**args, **env}
        yield inst, scope
        if inst.cmd == "ENV":
            env.update({inst.expand(k, scope): inst.expand(v, scope) for k, v in inst.pairs})
        elif inst.cmd == "ARG":
            for name, default in inst.arg_pairs:
                if name in build_args:
                    args[name] = build_args[name]
                elif default is not None:
                    args[name] = inst.expand(default, scope)
                elif name in global_values:
                    args[name] = global_values[name]
