"""Output formatting that matches the docker CLI byte for byte: go-units sizes and durations, Go's
text/tabwriter, and a small Go-template subset for ``--format`` / ``inspect -f``.

Template subset (documented in ``dockyard inspect --help``):
  * text with ``{{ ... }}`` actions; ``{{- ... -}}`` trims surrounding whitespace
  * field paths ``.``, ``.A.B.C`` (a missing map key prints ``<no value>``)
  * string, integer literals; pipelines ``a | b`` (the left value becomes b's last argument)
  * functions ``json``, ``index X k...``, ``join LIST SEP``, ``split S SEP``, ``upper``,
    ``lower``, ``title``, ``len``, ``truncate S N``, ``pad S L R``, ``print``, ``println``
  * ``{{range PIPE}}...{{end}}``, ``{{if PIPE}}...{{else}}...{{end}}``, ``{{with PIPE}}...{{end}}``
  * ``table`` prefix: a header row from the field names and tabwriter-aligned columns
A field whose value is callable is called with the command's arguments (``{{.Label "k"}}``).
"""

import json
import re
import time

from dockyard.cli.opts import ram_in_bytes  # noqa: F401  (re-exported: it lived here)
from dockyard.units import human_duration  # noqa: F401  (re-exported for the CLI)

# -- go-units -------------------------------------------------------------------------------

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def human_size(size: float, precision: int = 3) -> str:
    """units.HumanSizeWithPrecision: decimal units, %.3g ("4.26MB", "100B", "1kB")."""
    i = 0
    size = float(size)
    while size >= 1000.0 and i < len(_DECIMAL) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{_DECIMAL[i]}"


def since(unix_seconds: float, now: float | None = None) -> str:
    """'2 minutes ago' for a unix time, as docker's CREATED columns."""
    return human_duration((now if now is not None else time.time()) - unix_seconds) + " ago"


# -- strings ----------------------------------------------------------------------------------

def ellipsis(s: str, n: int) -> str:
    """formatter.Ellipsis: at most n characters, the last one '…' when cut."""
    if len(s) <= n:
        return s
    return s[: n - 1] + "…" if n > 1 else s[:n]


def truncate_id(i: str) -> str:
    """stringid.TruncateID: drop 'sha256:' and keep 12 hex digits."""
    if ":" in i:
        i = i.split(":", 1)[1]
    return i[:12]


def go_quote(s: str) -> str:
    """strconv.Quote for the common cases (printable text, \\n \\t \\" \\\\)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# -- text/tabwriter -------------------------------------------------------------------------

def tabwrite(text: str, minwidth: int = 10, tabwidth: int = 1, padding: int = 3) -> str:
    """Go's tabwriter.NewWriter(out, minwidth, tabwidth, padding, ' ', 0) applied to ``text``.

    Cells are tab-terminated; the text after a line's last tab is not aligned. Columns are
    aligned per block of consecutive lines that have that column, as Go does.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    trailing_newline = text.endswith("\n")
    if trailing_newline:
        lines.pop()
    out: list[str] = []
    widths: list[int] = []

    def write_lines(a, b):
        for line in lines[a:b]:
            parts = []
            for j, cell in enumerate(line):
                if j < len(widths):
                    parts.append(cell + " " * (widths[j] - len(cell)))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def fmt(line0, line1):
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out) + ("\n" if trailing_newline else "")


# -- inspect output ---------------------------------------------------------------------------

def indent_raw(raws: list[str], indent: str = "    ") -> str:
    """json.MarshalIndent of a list of raw JSON documents, as ``docker inspect`` prints them:
    the server's bytes re-indented, strings (and their escapes) untouched."""
    if not raws:
        return "[]"
    out, depth, need, in_str, esc = [], 1, False, False, False
    out.append("[\n" + indent)
    text = (",".join(r.strip() for r in raws))
    for ch in text:
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch in " \t\r\n":
            continue
        if need and ch not in "]}":
            need = False
            depth += 1
            out.append("\n" + indent * depth)
        if ch == '"':
            in_str = True
            out.append(ch)
        elif ch in "{[":
            need = True
            out.append(ch)
        elif ch in "}]":
            if need:
                need = False  # empty: {} or []
            else:
                depth -= 1
                out.append("\n" + indent * depth)
            out.append(ch)
        elif ch == ",":
            out.append(",\n" + indent * depth)
        elif ch == ":":
            out.append(": ")
        else:
            out.append(ch)
    out.append("\n]")
    return "".join(out)


# -- Go template subset ---------------------------------------------------------------------

class TemplateError(ValueError):
    pass


class _NoValue:
    def __repr__(self):
        return "<no value>"


NO_VALUE = _NoValue()


def go_str(v) -> str:
    """fmt.Sprint of a decoded-JSON value, as Go prints interface{} values."""
    if v is NO_VALUE:
        return "<no value>"
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def go_json(v) -> str:
    """json.Marshal: compact, sorted map keys, <>& escaped as Go does."""
    if v is NO_VALUE:
        v = None
    if isinstance(v, dict):  # row contexts carry methods like .Label; they are not data
        v = {k: x for k, x in v.items() if not callable(x)}
    s = json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _truth(v) -> bool:
    return not (v is None or v is NO_VALUE or v is False or v == 0 or v == "" or v == [] or v == {})


def _index(v, *keys):
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, NO_VALUE)
        elif isinstance(v, (list, str)):
            try:
                v = v[int(k)]
            except (IndexError, ValueError) as e:
                raise TemplateError(f"error calling index: index out of range: {k}") from e
        else:
            raise TemplateError(f"error calling index: cannot index {go_str(v)}")
    return v


def _pad(s, left, right):
    return " " * int(left) + go_str(s) + " " * int(right)


FUNCS = {
    "json": go_json,
    "index": _index,
    "join": lambda lst, sep: sep.join(go_str(x) for x in (lst or [])),
    "split": lambda s, sep: go_str(s).split(sep),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "len": lambda v: len(v) if v not in (None, NO_VALUE) else 0,
    "truncate": lambda s, n: go_str(s)[: int(n)],
    "pad": _pad,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
}

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\|)|(\()|(\))|([^\s|()]+))')
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _tokens(src: str) -> list:
    """Split an action into tokens; unknown function names fail here, at parse time, as in Go."""
    toks, pos = [], 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:]!r} in action")
        pos = m.end()
        if m.group(1):
            toks.append(("lit", json.loads(m.group(1))))
        elif m.group(2):
            toks.append(("lit", m.group(2)[1:-1]))
        else:
            word = next(g for g in m.groups()[2:] if g)
            known = word in FUNCS or word in ("true", "false", "nil")
            if re.fullmatch(r"[A-Za-z_]\w*", word) and not known:
                raise TemplateError(f'function "{word}" not defined')
            toks.append(("op", word))
    return toks


class Template:
    """Parse once, ``render(data)`` many times."""

    def __init__(self, text: str):
        self.text = text
        self.nodes = self._parse(text)

    # Nodes: ("text", s) | ("expr", tokens) | ("range"/"with", tokens, body, else)
    # | ("if", tokens, body, else).
    def _parse(self, text):
        parts, last = [], 0
        for m in _ACTION.finditer(text):
            before = text[last:m.start()]
            if m.group(1):
                before = before.rstrip()
            parts.append(("text", before))
            parts.append(("action", m.group(2).strip(), bool(m.group(3))))
            last = m.end()
        parts.append(("text", text[last:]))
        if "{{" in text[last:]:
            raise TemplateError("unclosed action")
        # apply right-trim markers to the following text
        for i, p in enumerate(parts):
            if p[0] == "action" and p[2] and i + 1 < len(parts):
                parts[i + 1] = ("text", parts[i + 1][1].lstrip())
        nodes, rest = self._block(parts, 0, top=True)
        return nodes

    def _block(self, parts, i, top=False):
        nodes = []
        while i < len(parts):
            p = parts[i]
            if p[0] == "text":
                if p[1]:
                    nodes.append(("text", p[1]))
                i += 1
                continue
            word, _, rest = p[1].partition(" ")
            if word in ("end", "else"):
                if top:
                    raise TemplateError(f"unexpected {{{{{word}}}}}")
                return nodes, i
            if word in ("range", "if", "with"):
                body, i = self._block(parts, i + 1)
                other = []
                if parts[i][1] == "else":
                    other, i = self._block(parts, i + 1)
                if i >= len(parts) or parts[i][1] != "end":
                    raise TemplateError(f"unexpected EOF: {{{{{word}}}}} without {{{{end}}}}")
                nodes.append((word, _tokens(rest), body, other))
                i += 1
                continue
            if word.startswith("/*"):
                i += 1
                continue
            nodes.append(("expr", _tokens(p[1])))
            i += 1
        if not top:
            raise TemplateError("unexpected EOF: missing {{end}}")
        return nodes, i

    def render(self, data) -> str:
        out: list[str] = []
        self._exec(self.nodes, data, out)
        return "".join(out)

    def _exec(self, nodes, dot, out):
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                out.append(go_str(self._pipeline(n[1], dot)))
            elif n[0] == "if":
                self._exec(n[2] if _truth(self._pipeline(n[1], dot)) else n[3], dot, out)
            elif n[0] == "with":
                v = self._pipeline(n[1], dot)
                self._exec(n[2], v, out) if _truth(v) else self._exec(n[3], dot, out)
            else:  # range
                v = self._pipeline(n[1], dot)
                items = [v[k] for k in sorted(v)] if isinstance(v, dict) else (v or [])
                if v is NO_VALUE:
                    items = []
                if not items:
                    self._exec(n[3], dot, out)
                for item in items:
                    self._exec(n[2], item, out)

    def _pipeline(self, toks, dot):
        cmds, cur, depth = [], [], 0
        for t in toks:  # split on top-level '|'
            if t == ("op", "|") and depth == 0:
                cmds.append(cur)
                cur = []
                continue
            depth += t == ("op", "(")
            depth -= t == ("op", ")")
            cur.append(t)
        cmds.append(cur)
        value, piped = None, False
        for cmd in cmds:
            if not cmd:
                raise TemplateError("missing command in pipeline")
            value = self._command(cmd, dot, [value] if piped else [])
            piped = True
        return value

    def _args(self, toks, dot):
        args, i = [], 0
        while i < len(toks):
            t = toks[i]
            if t == ("op", "("):
                depth, j = 1, i + 1
                while j < len(toks) and depth:
                    depth += toks[j] == ("op", "(")
                    depth -= toks[j] == ("op", ")")
                    j += 1
                args.append(self._pipeline(toks[i + 1:j - 1], dot))
                i = j
                continue
            args.append(self._operand(t, dot))
            i += 1
        return args

    def _operand(self, t, dot):
        kind, v = t
        if kind == "lit":
            return v
        if v.startswith("."):
            return self._field(dot, v)
        if re.fullmatch(r"-?\d+", v):
            return int(v)
        if v in ("true", "false"):
            return v == "true"
        if v == "nil":
            return None
        if v in FUNCS:
            return FUNCS[v]()
        raise TemplateError(f'function "{v}" not defined')

    @staticmethod
    def _field(dot, path):
        v = dot
        for name in filter(None, path.split(".")):
            if isinstance(v, dict):
                v = v.get(name, NO_VALUE)
            elif v is NO_VALUE or v is None:
                return NO_VALUE
            else:
                raise TemplateError(f"can't evaluate field {name} in type {type(v).__name__}")
        return v

    def _command(self, toks, dot, piped):
        head = toks[0]
        if head[0] == "op" and head[1] in FUNCS:
            args = self._args(toks[1:], dot) + piped
            try:
                return FUNCS[head[1]](*args)
            except TypeError as e:
                raise TemplateError(f"wrong number of args for {head[1]}") from e
        if head[0] == "op" and head[1].startswith(".") and callable(self._field(dot, head[1])):
            return self._field(dot, head[1])(*(self._args(toks[1:], dot) + piped))
        if len(toks) > 1 or piped:
            raise TemplateError(f"can't give argument to non-function {head[1]}")
        return self._args(toks, dot)[0]


def prepare_format(fmt: str) -> tuple[bool, str]:
    """docker's preFormat: strip the 'table' key, unescape \\t and \\n. Returns (is_table, text)."""
    is_table = fmt.startswith("table")
    if is_table:
        fmt = fmt[len("table"):]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return is_table, fmt


def check_format(fmt: str | None):
    """Parse a --format value now, so a bad template fails before any request is made."""
    if fmt and fmt not in ("json", "table"):
        Template(prepare_format(fmt)[1])


def render_rows(fmt: str, rows: list, headers: dict, minwidth: int = 10) -> str:
    """Run ``fmt`` over each row (dicts); a 'table' format gets a header and tabwriter alignment.

    The header is the same template rendered over ``headers`` (field name -> column title), which
    is how docker's formatter produces it too.
    """
    if fmt == "json":
        fmt = "{{json .}}"
    is_table, text = prepare_format(fmt)
    tmpl = Template(text)
    body = "".join(tmpl.render(r) + "\n" for r in rows)
    if not is_table:
        return body
    header = Template(text).render(_HeaderDict(headers)) + "\n"
    return tabwrite(header + body, minwidth=minwidth)


class _HeaderDict(dict):
    """Header context: a known field renders its title, anything else an empty cell. A
    ``{{.Label "com.example.k"}}`` column is titled by the last part of the key, as in docker."""

    def get(self, key, default=None):
        if key == "Label":
            return lambda name="": str(name).split(".")[-1]
        return super().get(key, "")
