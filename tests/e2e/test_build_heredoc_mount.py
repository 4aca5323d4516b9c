"""Build features of BuildKit's Dockerfile syntax: heredocs on RUN/COPY and ``RUN --mount``.

Real builds through the daemon (dockyard's CLI). Each test removes the images it made
(``clean_daemon``), the cache-mount directories it made, and checks that no container or mount
was left behind (``daemon.snapshot().leaks_since``).
"""

import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest

pytestmark = pytest.mark.privileged


@pytest.fixture
def name():
    return f"dyh-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ctx(tmp_path):
    d = tmp_path / "ctx"
    d.mkdir()
    return d


@pytest.fixture
def d(clean_daemon):
    """The daemon, checked for leftover containers and mounts after the test."""
    before = clean_daemon.snapshot()
    yield clean_daemon
    # cgroup dirs are global and other daemons (other test runs on this host) make them too, so
    # only mounts under our roots and our containers are compared here
    leaks = clean_daemon.snapshot().leaks_since(before)
    assert [x for x in leaks if not x.startswith("cgroup ")] == []
    tmp = os.path.join(clean_daemon.data_root, "build", "tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []


@pytest.fixture
def cache_id(daemon):
    """A cache-mount id unique to the test; its directory (and lock file) is removed after."""
    ident = f"dyh-{uuid.uuid4().hex[:10]}"
    yield ident
    base = os.path.join(daemon.data_root, "build", "cache-mounts", ident)
    shutil.rmtree(base, ignore_errors=True)
    if os.path.exists(base + ".lock"):
        os.unlink(base + ".lock")


def build(daemon, ctx, dockerfile, *args, check=True):
    (ctx / "Dockerfile").write_text(dockerfile)
    r = daemon.cli("build", *args, str(ctx), timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def run(daemon, image, script):
    r = daemon.cli("run", "--rm", image, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    return r.stdout


def top_layer(daemon, ref) -> dict:
    """{name: TarInfo} of the image's last layer, read from ``docker save`` of it."""
    status, _, body = daemon.http("GET", f"/images/{ref}/get")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        layer = outer.extractfile(manifest[0]["Layers"][-1]).read()
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers()}


def test_run_heredoc_script_and_shebang(d, ctx, name):
    r = build(d, ctx, """\
FROM busybox
ARG WHO=heredoc
RUN <<EOF
set -e
echo "hello $WHO" > /hello
echo line2 >> /hello
EOF
RUN <<EOF
#!/bin/sh -e
echo "from a script $0" > /script
EOF
""", "-t", name)
    assert run(d, name, "cat /hello /script") == "hello heredoc\nline2\nfrom a script /dev/pipes/EOF\n"
    assert not any(n.startswith("dev") for n in top_layer(d, name))  # nor the script's mount point
    assert " ---> Using cache" not in r.stdout
    again = build(d, ctx, (ctx / "Dockerfile").read_text(), "-t", name)
    assert again.stdout.count(" ---> Using cache") == 3


def test_two_heredocs_on_one_run_line(d, ctx, name):
    build(d, ctx, """\
FROM busybox
ENV X=expanded
RUN <<A cat > /a && <<"B" cat > /b
first $X
A
second $X
B
RUN <<-EOT sh
\techo tabs stripped > /c
\tEOT
""", "-t", name)
    assert run(d, name, "cat /a /b /c") == "first expanded\nsecond $X\ntabs stripped\n"


def test_copy_heredoc_with_chmod_and_chown(d, ctx, name):
    build(d, ctx, """\
FROM busybox
ARG GREETING=hi
COPY <<EOF /etc/greeting
$GREETING "quoted"
EOF
COPY --chmod=0755 --chown=1:2 <<one <<two /bin/extra/
#!/bin/sh
echo one
one
echo two
two
""", "-t", name)
    out = run(d, name, "cat /etc/greeting; stat -c '%a %u %g %n' /etc/greeting /bin/extra/one "
                       "/bin/extra/two; /bin/extra/one")
    assert out == ('hi "quoted"\n644 0 0 /etc/greeting\n755 1 2 /bin/extra/one\n'
                   "755 1 2 /bin/extra/two\none\n")
    # the content is in the cache key: a changed heredoc body rebuilds that step
    text = (ctx / "Dockerfile").read_text()
    again = build(d, ctx, text.replace("echo two", "echo TWO"), "-t", name)
    assert again.stdout.count(" ---> Using cache") == 2, again.stdout  # ARG, first COPY
    assert run(d, name, "cat /bin/extra/two") == "echo TWO\n"


def test_cache_mount_persists_but_stays_out_of_the_layer(d, ctx, name, cache_id):
    text = f"""\
FROM busybox
RUN --mount=type=cache,id={cache_id},target=/var/cache/thing,sharing=locked \\
    ls /var/cache/thing; date +%s%N >> /var/cache/thing/runs; echo built > /out
"""
    first = build(d, ctx, text, "-t", name)
    assert "runs" not in first.stdout.split("Running in")[1].splitlines()[1]  # empty at first
    layer = top_layer(d, name)
    # neither the cache's files, nor the stub mount point, nor /var copied up to hold it
    assert set(layer) == {"out"}, set(layer)
    assert run(d, name, "ls -a /var/cache 2>&1; test -e /var/cache/thing || echo gone") .endswith("gone\n")
    host = os.path.join(d.data_root, "build", "cache-mounts", cache_id)
    assert len(open(os.path.join(host, "runs")).read().split()) == 1
    # a second build of a changed step sees what the first wrote in the cache
    second = build(d, ctx, text.replace("echo built", "echo rebuilt"), "-t", name)
    assert "runs" in second.stdout
    assert len(open(os.path.join(host, "runs")).read().split()) == 2
    # the mount spec is part of the key: another target is another step
    third = build(d, ctx, text.replace("/var/cache/thing", "/cache2"), "-t", name)
    assert " ---> Using cache" not in third.stdout


def test_cache_mount_uid_gid_mode(d, ctx, name, cache_id):
    build(d, ctx, f"""\
FROM busybox
RUN --mount=type=cache,id={cache_id},target=/c,uid=1000,gid=1001,mode=0700 stat -c '%u %g %a' /c > /st
""", "-t", name)
    assert run(d, name, "cat /st") == "1000 1001 700\n"


def test_bind_mount_from_context_is_not_copied(d, ctx, name):
    (ctx / "data").mkdir()
    (ctx / "data" / "secret.txt").write_text("from the context\n")
    text = """\
FROM busybox
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/secret.txt > /copied && \\
    (touch /mnt/data/new 2>/dev/null && echo writable || echo read-only) > /ro
RUN --mount=target=/ctx,rw touch /ctx/scratch && ls /ctx > /listing
RUN --mount=source=data/secret.txt,target=/etc/secret.conf cp /etc/secret.conf /copied2
"""
    r = build(d, ctx, text, "-t", name)
    assert run(d, name, "cat /copied /ro; ls /mnt /ctx /etc/secret.conf 2>&1 | grep -c 'No such' ; "
                        "cat /listing /copied2") == \
        "from the context\nread-only\n3\nDockerfile\ndata\nscratch\nfrom the context\n"
    assert sorted(os.listdir(ctx)) == ["Dockerfile", "data"]  # rw writes were discarded
    layer = top_layer(d, f"{name}")  # the file mount's stub (a file) did not leak either
    assert set(layer) == {"copied2"}, set(layer)
    # the bound files are an input of the step: changing them reruns it
    (ctx / "data" / "secret.txt").write_text("changed\n")
    again = build(d, ctx, text, "-t", name)
    assert "Using cache" not in again.stdout.split("Step 2/4")[1].split("Step 3/4")[0]
    assert run(d, name, "cat /copied") == "changed\n"
    assert r.returncode == 0


def test_bind_mount_from_previous_stage_and_tmpfs(d, ctx, name):
    build(d, ctx, """\
FROM busybox AS tools
RUN mkdir /tools && echo 'echo tool ran' > /tools/tool.sh
FROM busybox
RUN --mount=type=bind,from=tools,source=/tools,target=/t sh /t/tool.sh > /result
RUN --mount=type=bind,from=tools,target=/t,rw rm -rf /t/tools && ls /t > /dev/null
RUN --mount=type=tmpfs,target=/scratch,size=1m echo x > /scratch/f && \\
    grep ' /scratch ' /proc/mounts | cut -d' ' -f3 > /fstype
""", "-t", name)
    assert run(d, name, "cat /result /fstype; ls / | grep -cE '^(t|scratch|tools)$'; true") == "tool ran\ntmpfs\n0\n"


def test_secret_and_ssh_mounts_are_refused(d, ctx, name):
    before = d.image_ids()
    for kind in ("secret,id=tok", "ssh"):
        r = build(d, ctx, f"FROM busybox\nRUN echo step\nRUN --mount=type={kind} cat /run/secrets/tok\n",
                  "-t", name, check=False)
        assert r.returncode != 0
        kind = kind.split(",")[0]
        assert f"RUN --mount=type={kind} is not supported by this builder" in r.stdout + r.stderr
    assert d.image_ids() - before == set()  # the failed builds removed what they made


def test_bad_mount_source_fails_cleanly(d, ctx, name):
    before = d.image_ids()
    r = build(d, ctx, "FROM busybox\nRUN --mount=source=nope,target=/x true\n", "-t", name, check=False)
    assert r.returncode != 0 and "source 'nope' not found in the build context" in r.stdout + r.stderr
    r = build(d, ctx, "FROM busybox\nRUN --mount=type=bind,from=busybox,source=/nope,target=/x true\n",
              "-t", name, check=False)
    assert r.returncode != 0 and "not found in" in r.stdout + r.stderr
    # a failing RUN with every kind of mount: its mounts and temp dirs go too (the fixture checks)
    (ctx / "f").write_text("x")
    r = build(d, ctx, "FROM busybox AS s\nFROM busybox\n"
              "RUN --mount=from=s,target=/s --mount=target=/c,rw --mount=type=tmpfs,target=/t <<EOF\n"
              "#!/bin/sh\nexit 3\nEOF\n", "-t", name, check=False)
    assert r.returncode == 3 and "returned a non-zero code: 3" in r.stdout + r.stderr
    assert d.image_ids() - before == set()


def test_real_docker_cli_and_docker_py(d, ctx, name, cache_id):
    """The real clients send the Dockerfile as is; the features work through them too."""
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN --mount=type=cache,id={cache_id},target=/c <<EOF\n"
                                    "echo via $0 > /c/x; cp /c/x /x\nEOF\n")
    env = d._docker_env()
    env["DOCKER_BUILDKIT"] = "0"  # no buildx here: the legacy builder's API, which dockyard serves
    r = subprocess.run([d.docker_bin, "-H", d.host, "build", "-t", name, str(ctx)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run(d, name, "cat /x") == "via /bin/sh\n"
    image, _ = d.api().images.build(path=str(ctx), tag=f"{name}:py", rm=True)
    assert image.id == d.api().images.get(name).id  # every step from the cache
