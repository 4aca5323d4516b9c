"""Fuzzing: whatever the text, parse() returns a Dockerfile or raises DockerfileError, quickly.

Inputs are bounded (a few hundred characters) so a pathological case shows up as a failure, not
a hang; hypothesis' deadline catches anything slow. DOCKYARD_FUZZ_SCALE=50 runs 50 times as many
examples (a longer campaign by hand); no example database is kept.
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.build import dockerfile as d
from dockyard.build import dockerignore
from dockyard.errdefs import InvalidArgument

SCALE = int(os.environ.get("DOCKYARD_FUZZ_SCALE", "1"))


def fuzz(examples):
    return settings(max_examples=examples * SCALE, deadline=1000, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


KEYWORDS = ["FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "LABEL", "MAINTAINER", "EXPOSE",
            "VOLUME", "USER", "WORKDIR", "COPY", "ADD", "SHELL", "STOPSIGNAL", "HEALTHCHECK",
            "ONBUILD", "NONE", "AS", "from", "FORM"]
TOKENS = KEYWORDS + [
    " ", "  ", "\t", "\n", "\r\n", "\\", "\\\n", "`", "`\n", "#", "# escape=`\n", "# syntax=x\n",
    "'", '"', "$", "${", "}", "{", ":-", ":+", "-", "+", "?", ":", "#", "%", "/", "=", "a=b",
    "<<", "<<EOF", "<<-EOF", "<<'EOF'", '<<"E"', "EOF\n", "\tEOF\n", "E\n", "3<<X", "X\n",
    "[", "]", '["a"', '"b"]', ",", "[]", "null", "1", "\"", "--", "--from=", "--mount=",
    "type=cache,target=/x", "type=bind", ",ro", "--chown=", "--link", "--interval=", "1s",
    "--network=none", "--retries=", "CMD", "NONE", "é", "\x00", "\ufeff", "\u00a0", "\u2028",
]


def check(text):
    try:
        df = d.parse(text)
    except d.DockerfileError as e:
        assert "\n" not in str(e)
        return
    # the rest of the pure API must hold up too on anything parse accepted
    try:
        stage = d.validate_stages(df)
        meta = d.global_scope(df, {"A": "1"})
        for inst, env in d.stage_scopes(stage, {}, meta, {}):
            inst.expanded(env)
    except d.DockerfileError:
        pass


@fuzz(400)
@given(st.text(max_size=400))
def test_random_text(text):
    check(text)


@fuzz(1500)
@given(st.lists(st.sampled_from(TOKENS), max_size=80))
def test_token_soup(tokens):
    check("".join(tokens))


@fuzz(1000)
@given(st.sampled_from(["FROM x\n", "ARG a\nFROM x\n", ""]),
       st.lists(st.sampled_from(KEYWORDS), min_size=1, max_size=6),
       st.lists(st.sampled_from(TOKENS), max_size=40))
def test_instruction_lines(prefix, keywords, tokens):
    # keywords at the start of lines reach the per-instruction parsers more often
    lines = [k + " " + "".join(tokens[i::len(keywords)]) for i, k in enumerate(keywords)]
    check(prefix + "\n".join(lines))


@fuzz(500)
@given(st.lists(st.sampled_from(TOKENS), max_size=30), st.dictionaries(
    st.sampled_from(["a", "A", "1", "_", "é"]), st.sampled_from(["", " ", "x y", "$a", "'"])))
def test_expand_only_raises_dockerfile_error(tokens, env):
    for escape in ("\\", "`"):
        try:
            d.expand("".join(tokens), env, escape)
            d.split_and_expand("".join(tokens), env, escape)
        except d.DockerfileError:
            pass


@fuzz(500)
@given(st.lists(st.text(alphabet="ab/*?[]!^-\\.# \n", max_size=12), max_size=6),
       st.text(alphabet="ab/.", max_size=10))
def test_dockerignore_only_raises_invalid_argument(lines, path):
    try:
        patterns = dockerignore.parse(lines)
        dockerignore.matcher(lines)(path)
        dockerignore.can_skip_dir(patterns, path or ".")
    except InvalidArgument:
        pass
