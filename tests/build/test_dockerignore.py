"""The .dockerignore matcher, against Docker's documented rules and against what a real docker
build kept from a context (fixtures/dockerignore_recorded.json)."""

import json
from pathlib import Path

import pytest

from dockyard.build import dockerignore
from dockyard.errdefs import InvalidArgument

# (patterns, {path: excluded?})
CASES = [
    # reference example: "*/temp*", "*/*/temp*", "temp?"
    (["# comment", "*/temp*", "*/*/temp*", "temp?"],
     {"somedir/temporary.txt": True, "somedir/temp": True, "somedir/subdir/temporary.txt": True,
      "tempa": True, "tempab": False, "temp.txt": False, "a/b/c/temp": False, "# comment": False}),
    # '**' matches any number of directories, including none
    (["**/*.go"], {"a.go": True, "x/y/z.go": True, "x/y/z.go.txt": False}),
    (["a/**/b"], {"a/b": True, "a/x/y/b": True, "a/x/y/b/c": True, "b": False}),
    (["a/**"], {"a/x": True, "a/x/y": True, "a": False, "ab/x": False}),
    (["**"], {"anything": True, "a/b": True}),
    # a leading '**' before plain text is a suffix match
    (["**.log"], {"x.log": True, "a/b.log": True, "log": False}),
    # exceptions: last match wins (reference: "*.md / !README.md / README-secret.md")
    (["*.md", "!README*.md", "README-secret.md"],
     {"a.md": True, "README.md": False, "README-secret.md": True, "README-x.md": False}),
    (["*.md", "README-secret.md", "!README*.md"], {"README-secret.md": False}),
    # a pattern matching a directory excludes what is below it; an exception re-includes
    (["build", "!build/keep"], {"build": True, "build/x": True, "build/keep": False,
                                "build/keep/deep": False, "builder": False}),
    # leading '/' stripped, patterns and paths cleaned, surrounding blanks trimmed
    (["/abs", "  ./rel/../dir/  ", "x//y/"], {"abs": True, "dir/f": True, "x/y": True, "rel": False}),
    # '#' starts a comment only in the first column
    ([" #notcomment"], {"#notcomment": True}),
    # classes and escapes as in Go's filepath.Match
    (["[a-c].txt", "[^x]y", "\\*"], {"b.txt": True, "d.txt": False, "zy": True, "xy": False,
                                      "*": True, "a": False}),
    # '*' and '?' never cross '/'
    # "!*/" is cleaned to "!*": it re-includes everything
    (["*", "!*/"], {"a": False, "a/b": False}),
    (["a?c"], {"abc": True, "a/c": False}),
    ([".dockerignore", "Dockerfile"], {".dockerignore": True, "Dockerfile": True, "sub/Dockerfile": False}),
]


@pytest.mark.parametrize("patterns,expect", CASES, ids=lambda v: repr(v)[:40])
def test_matcher(patterns, expect):
    excluded = dockerignore.matcher(patterns)
    assert {p: excluded(p) for p in expect} == expect


@pytest.mark.parametrize("line,message", [
    ("!", r'illegal exclusion pattern: "!"'),
    ("[abc", "unclosed \\["),
    ("a[]b", "bad \\[ class"),
    ("a\\", "trailing"),
])
def test_bad_patterns(line, message):
    with pytest.raises(InvalidArgument, match=message):
        dockerignore.matcher([line])


def test_bom_and_empty_lines():
    assert dockerignore.matcher(["\ufeffa", "", "   "])("a")


@pytest.mark.parametrize("patterns,directory,skip", [
    (["node_modules"], "node_modules", True),
    (["node_modules", "!node_modules/keep/me"], "node_modules", False),
    (["node_modules", "!node_modules/keep/me"], "node_modules/keep", False),
    (["node_modules", "!node_modules/keep/me"], "node_modules/other", True),
    (["node_modules", "!node_modules/*/me"], "node_modules/other", False),
    (["build", "!**/important"], "build", False),  # ** could reach below anything
    (["build", "!other/x"], "build", True),
    (["build", "!build"], "build", True),  # matches the dir itself only: nothing more below
])
def test_can_skip_dir(patterns, directory, skip):
    assert dockerignore.can_skip_dir(dockerignore.parse(patterns), directory) is skip
    # whenever skipping is allowed, nothing below is re-included
    if skip and dockerignore.matcher(patterns)(directory):
        excluded = dockerignore.matcher(patterns)
        for below in ("x", "keep", "keep/me", "a/important", "me"):
            assert excluded(f"{directory}/{below}")


RECORDED = json.loads((Path(__file__).parent / "fixtures" / "dockerignore_recorded.json").read_text())
# The classic docker CLI skips an excluded directory unless an exception pattern starts with its
# path, so it never finds a/b/c/keep.txt for "!**/keep.txt". We keep walking whenever an
# exception could match below (can_skip_dir), which is what the patterns say.
WALKER_DIFFERENCES = {("**/c", "!**/keep.txt"): ["a/b/c/keep.txt"]}


@pytest.mark.parametrize("case", RECORDED["cases"], ids=lambda c: " ".join(c["patterns"]))
def test_recorded_from_docker(case):
    excluded = dockerignore.matcher(case["patterns"])
    patterns = dockerignore.parse(case["patterns"])
    kept = []
    for path in RECORDED["files"]:
        # walk as a builder would: skip a whole excluded directory only when allowed
        parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if any(excluded(p) and dockerignore.can_skip_dir(patterns, p) for p in parents):
            continue
        if not excluded(path):
            kept.append(path)
    expected = sorted(case["kept"] + WALKER_DIFFERENCES.get(tuple(case["patterns"]), []))
    assert sorted(kept) == expected
