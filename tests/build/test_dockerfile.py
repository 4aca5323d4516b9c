"""Table tests for the Dockerfile parser: each fixture is Dockerfile text and the parse we expect.

Where Docker's documented behaviour (the Dockerfile reference on docs.docker.com) fixes the
answer, the case says so in its comment.
"""

import pytest

from dockyard.build import dockerfile as d
from dockyard.build.dockerfile import DockerfileError, Heredoc, Mount
from dockyard.errdefs import InvalidArgument


def only_stage(text):
    df = d.parse(text)
    assert len(df.stages) == 1
    return df.stages[0].instructions


def summary(inst):
    return (inst.cmd, inst.args, inst.flags, inst.json, inst.start_line, inst.end_line)


# (Dockerfile text after "FROM scratch\n", expected (cmd, args, flags, json, start, end) of each
# instruction; line numbers count the FROM line as 1)
TABLE = [
    # shell and exec forms
    ("RUN echo hi", [("RUN", ["echo hi"], {}, False, 2, 2)]),
    ('RUN ["echo", "hi"]', [("RUN", ["echo", "hi"], {}, True, 2, 2)]),
    ("CMD []", [("CMD", [], {}, True, 2, 2)]),
    # a bare CMD is accepted (recorded: Docker makes it ["/bin/sh", "-c"])
    ("CMD", [("CMD", [], {}, False, 2, 2)]),
    # invalid JSON falls back to the shell form (reference: "the exec form is parsed as a JSON
    # array"; anything else is shell form)
    ("CMD [echo, hi]", [("CMD", ["[echo, hi]"], {}, False, 2, 2)]),
    ("ENTRYPOINT ['sh']", [("ENTRYPOINT", ["['sh']"], {}, False, 2, 2)]),
    ('ENTRYPOINT  ["sh", "-c"]  ', [("ENTRYPOINT", ["sh", "-c"], {}, True, 2, 2)]),
    ('SHELL ["powershell", "-command"]', [("SHELL", ["powershell", "-command"], {}, True, 2, 2)]),
    # keywords are case-insensitive
    ("run   echo   a  ", [("RUN", ["echo   a"], {}, False, 2, 2)]),
    # ENV: both forms; legacy form keeps everything after the key as one value
    ('ENV a=b c="d e" f', None),  # error, tested below
    ("ENV a=b c=d", [("ENV", ["a", "b", "c", "d"], {}, False, 2, 2)]),
    ("ENV MY_NAME John Doe", [("ENV", ["MY_NAME", "John Doe"], {}, False, 2, 2)]),
    ('ENV a="x y" b=\'$z\' c=x\\ y', [("ENV", ["a", '"x y"', "b", "'$z'", "c", "x\\ y"], {}, False, 2, 2)]),
    ("ENV a=", [("ENV", ["a", ""], {}, False, 2, 2)]),
    ('LABEL "com.example.vendor"="ACME" version=1.0', [
        ("LABEL", ['"com.example.vendor"', '"ACME"', "version", "1.0"], {}, False, 2, 2)]),
    ("MAINTAINER Jane <j@example.com>", [("MAINTAINER", ["Jane <j@example.com>"], {}, False, 2, 2)]),
    ("EXPOSE 80/tcp 53/udp", [("EXPOSE", ["80/tcp", "53/udp"], {}, False, 2, 2)]),
    ('VOLUME ["/a", "/b"]', [("VOLUME", ["/a", "/b"], {}, True, 2, 2)]),
    ("VOLUME /a /b", [("VOLUME", ["/a", "/b"], {}, False, 2, 2)]),
    ("USER 1000:1000", [("USER", ["1000:1000"], {}, False, 2, 2)]),
    ("WORKDIR /my dir", [("WORKDIR", ["/my dir"], {}, False, 2, 2)]),
    ("STOPSIGNAL SIGKILL", [("STOPSIGNAL", ["SIGKILL"], {}, False, 2, 2)]),
    ("ARG a b=1 c=\"x y\"", [("ARG", ["a", "b=1", 'c="x y"'], {}, False, 2, 2)]),
    # COPY/ADD: flags kept, wildcards kept as given, JSON form for names with spaces
    ("COPY --from=build --chown=app:app --chmod=644 --link --parents *.txt dir/ /dst/", [
        ("COPY", ["*.txt", "dir/", "/dst/"],
         {"from": "build", "chown": "app:app", "chmod": "644", "link": True, "parents": True},
         False, 2, 2)]),
    ('COPY ["a b", "/c d/"]', [("COPY", ["a b", "/c d/"], {}, True, 2, 2)]),
    ("COPY --link=false --exclude=*.md --exclude=x . /", [
        ("COPY", [".", "/"], {"link": False, "exclude": ["*.md", "x"]}, False, 2, 2)]),
    ("ADD --checksum=sha256:abc --keep-git-dir https://x/y.tar /", [
        ("ADD", ["https://x/y.tar", "/"], {"checksum": "sha256:abc", "keep-git-dir": True}, False, 2, 2)]),
    # a quoted flag value; '--' ends the flags
    ('RUN --network="none" -- --not-a-flag', [("RUN", ["--not-a-flag"], {"network": "none"}, False, 2, 2)]),
    # HEALTHCHECK
    ("HEALTHCHECK NONE", [("HEALTHCHECK", ["NONE"], {}, False, 2, 2)]),
    ("HEALTHCHECK --interval=5m --timeout=3s --start-period=1s --start-interval=2s --retries=3 "
     "CMD curl -f http://localhost/ || exit 1", [
        ("HEALTHCHECK", ["CMD", "curl -f http://localhost/ || exit 1"],
         {"interval": "5m", "timeout": "3s", "start-period": "1s", "start-interval": "2s",
          "retries": "3"}, False, 2, 2)]),
    ('HEALTHCHECK cmd ["true"]', [("HEALTHCHECK", ["CMD", "true"], {}, True, 2, 2)]),
    # ONBUILD keeps the trigger's text
    ("ONBUILD ADD . /app/src", [("ONBUILD", ["ADD . /app/src"], {}, False, 2, 2)]),
    # continuations: comment lines and empty lines inside are dropped (reference: "comment lines
    # are removed before the Dockerfile instructions are executed"), indentation is kept
    ("RUN echo a \\\n  # a comment\n\n    b", [("RUN", ["echo a     b"], {}, False, 2, 5)]),
    # an escaped escape char at the end is literal, not a continuation (recorded from Docker)
    ("RUN a\\\\\nUSER b", [("RUN", ["a\\\\"], {}, False, 2, 2), ("USER", ["b"], {}, False, 3, 3)]),
    ("RUN a\\\\ \t\nUSER b", [("RUN", ["a\\\\"], {}, False, 2, 2), ("USER", ["b"], {}, False, 3, 3)]),
    # one JSON value is decoded and the rest of the line ignored (recorded from Docker)
    ('CMD ["a"] tail', [("CMD", ["a"], {}, True, 2, 2)]),
    # trailing blanks after the escape char still continue the line
    ("RUN a \\  \t\n b", [("RUN", ["a  b"], {}, False, 2, 3)]),
    # '#' is a comment only at the start of a line
    ("RUN echo # not a comment\n  # a comment\n", [("RUN", ["echo # not a comment"], {}, False, 2, 2)]),
    # CRLF line endings
    ("RUN a \\\r\n b\r\nUSER x\r\n", [("RUN", ["a  b"], {}, False, 2, 3), ("USER", ["x"], {}, False, 4, 4)]),
]


@pytest.mark.parametrize("body,expected", [t for t in TABLE if t[1] is not None], ids=lambda v: repr(v)[:40])
def test_table(body, expected):
    got = [summary(i) for i in only_stage("FROM scratch\n" + body)]
    assert got == [tuple(e) for e in expected]


def test_stages_and_global_args():
    df = d.parse("ARG BASE=alpine\nARG V\nFROM --platform=$BUILDPLATFORM ${BASE}:$V AS Build\n"
                 "RUN x\nfrom build as TEST\nFROM scratch\n")
    assert [a.args for a in df.global_args] == [["BASE=alpine"], ["V"]]
    assert [(s.index, s.name, s.base, s.platform) for s in df.stages] == [
        (0, "build", "${BASE}:$V", "$BUILDPLATFORM"), (1, "test", "build", None), (2, None, "scratch", None)]
    assert df.stages[0].instructions[0].start_line == 4
    assert df.stage("TEST") is df.stages[1] and df.stage("2") is df.stages[2]


def test_directives():
    # reference: directives are case-insensitive, allow blanks around '=', only at the top
    df = d.parse("# Syntax = docker/dockerfile:1\n#ESCAPE=`\nFROM scratch\nRUN a `\n b\nRUN c \\\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert [i.args for i in df.stages[0].instructions] == [["a  b"], ["c \\"]]
    # after any other line (a comment, an empty line, an instruction) it is just a comment
    for text in ("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n",
                 "\n# escape=`\nFROM x\nRUN a \\\n b\n",
                 "# unknowndirective=value\n# escape=`\nFROM x\nRUN a \\\n b\n",
                 "FROM x\n# escape=`\nRUN a \\\n b\n"):
        df = d.parse(text)
        assert df.escape == "\\" and df.stages[0].instructions[-1].args == ["a  b"], text
    with pytest.raises(DockerfileError, match="Dockerfile:2: only one escape"):
        d.parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        d.parse("# escape=x\nFROM x\n")
    # a UTF-8 BOM is ignored
    assert d.parse("\ufeff# escape=`\nFROM x\n").escape == "`"


def test_heredocs():
    text = ("FROM x\n"
            "RUN <<EOF\n"
            "echo $HOME\n"
            "EOF\n"
            "RUN 3<<-'A' <<\"B\" cat /dev/fd/3 -\n"
            "\t\tone\n"
            "\tA\n"
            "two\n"
            "B\n"
            "COPY --chmod=755 <<EOF /usr/bin/hello\n"
            "#!/bin/sh\n"
            "\n"
            "EOF\n"
            "RUN echo '<<NOT' \"<<NOT\" cat<<NOT <<\n"
            "RUN [\"<<NOT\"]\n")
    insts = d.parse(text).stages[0].instructions
    assert [(i.start_line, i.end_line) for i in insts] == [(2, 4), (5, 9), (10, 13), (14, 14), (15, 15)]
    assert insts[0].args == ["<<EOF"]
    assert insts[0].heredocs == [Heredoc("EOF", "echo $HOME\n", expand=True)]
    # <<- strips leading tabs from the body and the terminator; quoting the name disables expansion
    assert insts[1].heredocs == [Heredoc("A", "one\n", expand=False, chomp=True, fd=3),
                                 Heredoc("B", "two\n", expand=False)]
    assert insts[2].heredocs == [Heredoc("EOF", "#!/bin/sh\n\n")]
    assert insts[2].args == ["<<EOF", "/usr/bin/hello"] and insts[2].flags == {"chmod": "755"}
    assert insts[3].heredocs == [] and insts[4].heredocs == []
    # a heredoc body is raw: comments and continuations in it are content
    insts = only_stage("FROM x\nRUN <<E\n# not a comment \\\nE\n")
    assert insts[0].heredocs[0].content == "# not a comment \\\n"
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: unterminated heredoc"):
        d.parse("FROM x\nRUN <<EOF\necho\n EOF\n")


def test_run_mounts():
    inst = only_stage("FROM x\nRUN --mount=type=cache,target=/root/.cache,sharing=locked,id=pip "
                      "--mount=type=bind,from=build,source=/out,target=/in,rw "
                      "--mount=type=tmpfs,dst=/tmp,size=64m "
                      "--mount=target=/src "
                      "--mount=type=secret,id=tok,required "
                      "--network=host pip install .")[0]
    assert inst.flags["network"] == "host"
    assert inst.mounts == [
        Mount("cache", "/root/.cache", id="pip", sharing="locked"),
        Mount("bind", "/in", source="/out", from_="build", readonly=False),
        Mount("tmpfs", "/tmp", size="64m"),
        Mount("bind", "/src", readonly=True),  # bind mounts are read-only by default
        Mount("secret", id="tok", required=True),
    ]
    assert d.parse_mount("type=cache,target=$D,uid=$U", {"D": "/c", "U": "7"}) == Mount("cache", "/c", uid=7)
    assert d.parse_mount('type=bind,"target=/a,b",ro=false') == Mount("bind", "/a,b")


ERRORS = [
    # (text, expected message, as a regex)
    ("FROM x\nFORM y\n", r"^Dockerfile:2: unknown instruction: FORM \(did you mean FROM\?\)$"),
    ("FROM x\nFOOBARBAZ y\n", r"^Dockerfile:2: unknown instruction: FOOBARBAZ$"),
    ("RUN x\n", r"^Dockerfile:1: RUN before the first FROM"),
    ("ARG a\n", r"^Dockerfile: no FROM instruction"),
    ("# just a comment\n\n", r"^Dockerfile: the Dockerfile has no instructions"),
    ("FROM x\nENV\n", r"^Dockerfile:2: ENV requires at least one argument"),
    ("FROM x\nENV a\n", r"^Dockerfile:2: ENV a has no value"),
    ("FROM x\nLABEL a\n", r"^Dockerfile:2: LABEL a has no value"),
    ("FROM x\nENV a=b c\n", r"^Dockerfile:2: ENV: can't find = in 'c'"),
    ("FROM x\nSHELL /bin/sh -c\n", r"^Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("FROM x\nSHELL [\"sh\", 1]\n", r"JSON array syntax, arrays must be comprised of strings only"),
    ("FROM x\nCMD [\"a\", null]\n", r"^Dockerfile:2: when using JSON array syntax"),
    ("FROM x\nRUN\n", r"^Dockerfile:2: RUN requires at least one argument"),
    ("FROM x\nRUN echo \\\n", None),  # fine: Docker runs "echo "
    ("FROM x\nRUN \\\n", r"^Dockerfile:2: RUN requires at least one argument \(the file ends in a line continuation\)"),
    ("FROM x\n\\\n", r"^Dockerfile:2: unexpected end of file after a line continuation"),
    ("FROM x\nRUN <<EOF\n", r"^Dockerfile:2: unterminated heredoc"),
    ("FROM x\nCOPY a\n", r"^Dockerfile:2: COPY requires at least two arguments"),
    ("FROM x\nCOPY a <<EOF\nEOF\n", r"^Dockerfile:2: COPY: a heredoc can't be the destination"),
    ("FROM x\nCOPY --form=a b c\n", r"^Dockerfile:2: COPY: unknown flag: --form"),
    ("FROM x\nADD --from=a b c\n", r"^Dockerfile:2: ADD: unknown flag: --from"),
    ("FROM x\nCOPY --from a b\n", r"missing a value on flag --from"),
    ("FROM x\nCOPY --from=a --from=b a b\n", r"duplicate flag specified: --from"),
    ("FROM x\nCOPY --link=maybe a b\n", r"expecting boolean value for flag --link"),
    ("FROM x\nENV --a=b c=d\n", r"^Dockerfile:2: ENV: unknown flag: --a"),
    ("FROM a b\n", r"^Dockerfile:1: FROM requires either one argument, or three"),
    ("FROM a TO b\n", r"FROM requires either one argument, or three"),
    ("FROM a AS 1b\n", r"invalid name for build stage: '1b'"),
    ("FROM a AS b\nFROM c AS B\n", r"^Dockerfile:2: duplicate stage name 'b'"),
    ("FROM x\nUSER\n", r"USER requires exactly one argument"),
    ("FROM x\nVOLUME [\"\"]\n", r"VOLUME specified can not be an empty string"),
    ("FROM x\nHEALTHCHECK\n", r"HEALTHCHECK requires an argument"),
    ("FROM x\nHEALTHCHECK NONE x\n", r"HEALTHCHECK NONE takes no arguments"),
    ("FROM x\nHEALTHCHECK RUN x\n", r"unknown type 'RUN' in HEALTHCHECK \(try CMD\)"),
    ("FROM x\nHEALTHCHECK CMD\n", r"missing command after HEALTHCHECK CMD"),
    ("FROM x\nHEALTHCHECK --interval=5 CMD x\n", r"--interval=5: not a duration"),
    ("FROM x\nHEALTHCHECK --timeout=-1s CMD x\n", r"--timeout=-1s: must be at least 1ms"),
    ("FROM x\nHEALTHCHECK --retries=-1 CMD x\n", r"--retries=-1: must be a whole number, at least 1"),
    ("FROM x\nONBUILD ONBUILD RUN x\n", r"chaining ONBUILD via ONBUILD ONBUILD isn't allowed"),
    ("FROM x\nONBUILD FROM y\n", r"FROM isn't allowed as an ONBUILD trigger"),
    ("FROM x\nONBUILD MAINTAINER y\n", r"MAINTAINER isn't allowed as an ONBUILD trigger"),
    # a trigger is checked in the build that runs it, but its line syntax is checked here
    # (recorded: Docker builds "ONBUILD FORM x" and "ONBUILD COPY a", rejects "ONBUILD LABEL a")
    ("FROM x\nONBUILD FORM y\nONBUILD COPY a\n", None),
    ("FROM x\nONBUILD LABEL a\n", r"^Dockerfile:2: LABEL a has no value"),
    ("FROM x\nONBUILD CMD [1]\n", r"^Dockerfile:2: when using JSON array syntax"),
    ("FROM x\nRUN --mount=type=nfs,target=/x y\n", r"unsupported mount type 'nfs'"),
    ("FROM x\nRUN --mount=type=cache y\n", r"a cache mount needs target="),
    ("FROM x\nRUN --mount=type=cache,target=/x,colour=red y\n", r"unexpected key 'colour'"),
    ("FROM x\nRUN --mount=type=cache,target=/x,mode=rwx y\n", r"mode must be an octal number, not .rwx."),
    ("FROM x\nRUN --network=bridge y\n", r"--network=bridge: must be one of default, none, host"),
    ("FROM x\nARG =1\n", r"ARG names can not be blank"),
]


@pytest.mark.parametrize("text,message", ERRORS, ids=lambda v: repr(v)[:40])
def test_errors(text, message):
    if message is None:
        d.parse(text)
        return
    with pytest.raises(DockerfileError, match=message) as info:
        d.parse(text)
    assert isinstance(info.value, InvalidArgument)
    assert "\n" not in str(info.value)


def test_stage_references():
    df = d.parse("FROM a AS one\nFROM one AS two\nCOPY --from=0 a b\nCOPY --from=nginx:1 a b\n"
                 "RUN --mount=from=three,target=/t x\nFROM scratch AS three\nCOPY --from=$X a b\n")
    assert d.validate_stages(df) is df.stages[2]
    assert d.validate_stages(df, "TWO") is df.stages[1]
    assert d.resolve_stage_ref(df, "one") == 0 and d.resolve_stage_ref(df, "nginx") is None
    assert [j for _, j in d.stage_dependencies(df, df.stages[1])] == [0, 0, 2]
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found"):
        d.validate_stages(df, "nope")
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: invalid stage index 5"):
        d.validate_stages(d.parse("FROM a\nCOPY --from=5 a b\n"))
    with pytest.raises(DockerfileError, match=r"^Dockerfile:4: circular dependency between build stages: a -> b -> a"):
        d.validate_stages(d.parse("FROM x AS a\nCOPY --from=b / /\nFROM x AS b\nCOPY --from=a / /\n"))
    with pytest.raises(DockerfileError, match="circular dependency"):
        d.validate_stages(d.parse("FROM x AS a\nCOPY --from=a / /\n"))
    # FROM x AS x is the image x
    assert d.validate_stages(d.parse("FROM busybox AS busybox\n")).name == "busybox"
