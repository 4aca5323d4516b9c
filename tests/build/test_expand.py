"""Variable substitution (Docker's shell-word lexer) and ARG/ENV scoping."""

import pytest

from dockyard.build import dockerfile as d
from dockyard.build.dockerfile import DockerfileError

ENV = {"A": "a", "E": "", "S": "x  y", "HOME": "/root"}

# (word, env, what `expand` gives, what `split_and_expand` gives)
WORDS = [
    ("$A", ENV, "a", ["a"]),
    ("${A}b", ENV, "ab", ["ab"]),
    ("$Ab", ENV, "", []),  # the name is "Ab"
    ("$UNSET", ENV, "", []),
    ("pre-$1-post", ENV, "pre--post", ["pre--post"]),
    ("a$", ENV, "a$", ["a$"]),
    ("$ $", ENV, "$ $", ["$", "$"]),
    # reference: ${variable:-word} / ${variable:+word}; the ':' forms treat empty like unset
    ("${UNSET:-d}", ENV, "d", ["d"]),
    ("${E:-d}", ENV, "d", ["d"]),
    ("${A:-d}", ENV, "a", ["a"]),
    ("${A:+alt}", ENV, "alt", ["alt"]),
    ("${E:+alt}", ENV, "", []),
    ("${UNSET:+alt}", ENV, "", []),
    # without ':' only unset counts
    ("${E-d}", ENV, "", []),
    ("${UNSET-d}", ENV, "d", ["d"]),
    ("${E+alt}", ENV, "alt", ["alt"]),
    ("${UNSET+alt}", ENV, "", []),
    # the word of a modifier is itself expanded, recursively
    ("${UNSET:-${A}x}", ENV, "ax", ["ax"]),
    ("${UNSET:-a b}", ENV, "a b", ["a", "b"]),
    # quotes: single quotes are literal, double quotes expand but do not split
    ("'$A'", ENV, "$A", ["$A"]),
    ('"$A"', ENV, "a", ["a"]),
    ("$S", ENV, "x  y", ["x", "y"]),
    ('"$S"', ENV, "x  y", ["x  y"]),
    ('""', ENV, "", [""]),
    ("a 'b c' \"d e\"", ENV, "a b c d e", ["a", "b c", "d e"]),
    ("it's\"\"", {}, None, None),  # unterminated single quote: error
    # reference: "\$foo" is a literal $foo
    ("\\$A", ENV, "$A", ["$A"]),
    ("\\${A}", ENV, "${A}", ["${A}"]),
    ('"\\$A"', ENV, "$A", ["$A"]),
    ("a\\ b", ENV, "a b", ["a b"]),
    ('"a\\b"', ENV, "a\\b", ["a\\b"]),  # inside "", only \" \$ \\ are escapes
    ("'a\\'", ENV, "a\\", ["a\\"]),  # no escapes in ''
    ("x\\", ENV, "x", ["x"]),  # a trailing escape is dropped
    ("$HOME/bin:${PATH:-/usr/bin}", ENV, "/root/bin:/usr/bin", ["/root/bin:/usr/bin"]),
    # prefix/suffix removal and replacement (supported by Docker's lexer too)
    ("${F#*.}", {"F": "a.tar.gz"}, "tar.gz", ["tar.gz"]),
    ("${F##*.}", {"F": "a.tar.gz"}, "gz", ["gz"]),
    ("${F%.*}", {"F": "a.tar.gz"}, "a.tar", ["a.tar"]),
    ("${F%%.*}", {"F": "a.tar.gz"}, "a", ["a"]),
    ("${F/a/b}", {"F": "aXa"}, "bXa", ["bXa"]),
    ("${F//a/b}", {"F": "aXa"}, "bXb", ["bXb"]),
]


@pytest.mark.parametrize("word,env,one,many", WORDS, ids=lambda v: repr(v)[:30])
def test_expand(word, env, one, many):
    if one is None:
        with pytest.raises(DockerfileError):
            d.expand(word, env)
        return
    assert d.expand(word, env) == one
    assert d.split_and_expand(word, env) == many


@pytest.mark.parametrize("word,message", [
    ("${A", "missing '}'"),
    ("${", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${A!x}", r"unsupported modifier \(!\)"),
    ("${A:?must be set}", None),
    ("${UNSET:?must be set}", "UNSET: must be set"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ('"abc', "matching double-quote"),
])
def test_expand_errors(word, message):
    if message is None:
        assert d.expand(word, {"A": "1"}) == "1"
        return
    with pytest.raises(DockerfileError, match=message):
        d.expand(word, {"A": "1"})


def test_backtick_escape():
    # reference: with "# escape=`" the backslash is an ordinary character (Windows paths)
    assert d.expand("c:\\dir\\$A", {"A": "x"}, "`") == "c:\\dir\\x"
    assert d.expand("`$A", {"A": "x"}, "`") == "$A"
    df = d.parse("# escape=`\nFROM x\nWORKDIR c:\\a\\b `\n\\c\n")
    inst = df.stages[0].instructions[0]
    assert inst.args == ["c:\\a\\b \\c"] and inst.expanded({}) == ["c:\\a\\b \\c"]


def test_expanded_per_instruction():
    text = ("FROM x\nENV a=$A b=${A}\nLABEL \"$A\"=\"$A\"\nRUN echo $A\nCMD [\"$A\"]\nCOPY $A /$A/\n"
            "EXPOSE $PORTS\nWORKDIR /$A\nUSER $A\nVOLUME $A\nSTOPSIGNAL $A\nARG x=$A y\n"
            "ONBUILD RUN $A\nHEALTHCHECK CMD $A\nSHELL [\"$A\"]\nMAINTAINER $A\n")
    env = {"A": "v", "PORTS": "80 443"}
    got = {i.cmd: i.expanded(env) for i in d.parse(text).stages[0].instructions}
    # reference ("Environment replacement"): these instructions substitute ...
    assert got["ENV"] == ["a", "v", "b", "v"]
    assert got["LABEL"] == ["v", "v"]
    assert got["COPY"] == ["v", "/v/"]
    assert got["EXPOSE"] == ["80", "443"]
    assert got["WORKDIR"] == ["/v"] and got["USER"] == ["v"] and got["VOLUME"] == ["v"]
    assert got["STOPSIGNAL"] == ["v"] and got["ARG"] == ["x=v", "y"]
    # ... and these leave it to the shell in the container (or to the child build)
    assert got["RUN"] == ["echo $A"] and got["CMD"] == ["$A"] and got["ONBUILD"] == ["RUN $A"]
    assert got["HEALTHCHECK"] == ["CMD", "$A"] and got["SHELL"] == ["$A"] and got["MAINTAINER"] == ["$A"]


def test_expand_error_has_location():
    inst = d.parse("FROM x\n\nWORKDIR ${A\n").stages[0].instructions[0]
    with pytest.raises(DockerfileError, match=r"^Dockerfile:3: WORKDIR: syntax error: missing '}'$"):
        inst.expanded({})


def scopes(text, base_env=None, build_args=None, predefined=None):
    df = d.parse(text)
    meta = d.global_scope(df, build_args or {}, predefined or {})
    stage = df.stages[-1]
    return meta, [(i.cmd, i.expanded(env)) for i, env in
                  d.stage_scopes(stage, base_env or {}, meta, build_args or {})]


def test_env_instruction_sees_scope_before_it():
    # reference: "ENV abc=hello / ENV abc=bye def=$abc / ENV ghi=$abc" gives def=hello, ghi=bye
    _, got = scopes("FROM x\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\nLABEL l=$abc$def$ghi\n")
    assert got[-1] == ("LABEL", ["l", "byehellobye"])


def test_global_args_only_in_from_until_redeclared():
    text = ("ARG V=1.0\nARG IMG=busybox:$V\nFROM $IMG\nLABEL before=$V\nARG V\nLABEL after=$V\n"
            "ARG W=2\nLABEL w=$W\n")
    meta, got = scopes(text)
    assert meta == {"V": "1.0", "IMG": "busybox:1.0"}
    assert d.parse(text).stages[0].from_instruction.expanded(meta) == ["busybox:1.0"]
    assert got[0] == ("LABEL", ["before", ""])  # not visible before the stage redeclares it
    assert got[2] == ("LABEL", ["after", "1.0"])
    assert got[4] == ("LABEL", ["w", "2"])
    # a --build-arg overrides defaults, in the global scope and in the stage
    meta, got = scopes(text, build_args={"V": "9", "W": "3"})
    assert meta["IMG"] == "busybox:9" and got[2] == ("LABEL", ["after", "9"]) and got[4] == ("LABEL", ["w", "3"])
    # the automatic platform ARGs are global; a stage sees them once it declares them
    meta, got = scopes("FROM x\nLABEL a=$TARGETOS\nARG TARGETOS\nLABEL b=$TARGETOS\n",
                       predefined={"TARGETOS": "linux"})
    assert got[0] == ("LABEL", ["a", ""]) and got[2] == ("LABEL", ["b", "linux"])


def test_env_wins_over_arg():
    # reference: "Environment variables defined using the ENV instruction always override an
    # ARG instruction of the same name"
    _, got = scopes("FROM x\nARG V=arg\nENV V=env\nARG V=arg2\nLABEL v=$V\n", build_args={"V": "cli"})
    assert got[-1] == ("LABEL", ["v", "env"])
    _, got = scopes("FROM x\nARG P=arg\nLABEL p=$P\n", base_env={"P": "/image"})
    assert got[-1] == ("LABEL", ["p", "/image"])
