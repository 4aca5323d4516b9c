"""docker build end to end: dockyard's CLI, the real docker CLI (legacy builder) and docker-py.

Every test builds in its own temp context with its own tags and removes the images it made
(``clean_daemon``); the failing and hostile cases also check that no container, mount or image
was left behind and that the host is untouched.
"""

import io
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest
DOCKER = shutil.which("docker") or "/usr/bin/docker"

pytestmark = pytest.mark.privileged

MULTI = """\
FROM busybox
ENV GREETING=hello WHO=world
ARG FLAVOUR=plain
WORKDIR /app
COPY greet.sh ./
RUN chmod 755 greet.sh && echo "flavour $FLAVOUR" > flavour && echo bob:x:1234:1234::/app:/bin/sh >> /etc/passwd
USER bob
EXPOSE 8080
LABEL purpose=test
CMD ["/app/greet.sh"]
"""


def write(ctx, files: dict):
    for name, text in files.items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(ctx)


def build(daemon, ctx, *args, check=True):
    r = daemon.cli("build", *args, str(ctx), timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture
def name():
    """An image name unique to the test (the shared fixture's can end in '_', invalid in a repo)."""
    return f"dyb-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ctx(tmp_path):
    d = tmp_path / "ctx"
    d.mkdir()
    return d


def docker_build(daemon, *args):
    """The real docker CLI's legacy builder (no buildx here; BuildKit is off by request)."""
    env = daemon._docker_env()
    env["DOCKER_BUILDKIT"] = "0"
    return subprocess.run([DOCKER, "-H", daemon.host, "build", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def inspect(daemon, ref):
    status, body = daemon.json("GET", f"/images/{ref}/json")
    assert status == 200, body
    return body


def test_multi_step_build_runs_with_env_cmd_workdir_user(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": MULTI, "greet.sh": '#!/bin/sh\necho "$GREETING $WHO from $(pwd) as $(id -u) $(cat flavour)"\n'})
    r = build(clean_daemon, ctx, "-t", f"{name}:1", "--build-arg", "FLAVOUR=spicy")
    out = r.stdout
    assert "Step 1/10 : FROM busybox" in out and "Step 6/10 : RUN chmod" in out
    assert " ---> Running in " in out and "Successfully built " in out
    assert f"Successfully tagged {name}:1" in out
    run = clean_daemon.cli("run", "--rm", f"{name}:1")
    assert run.stdout == "hello world from /app as 1234 flavour spicy\n", run.stderr
    cfg = inspect(clean_daemon, f"{name}:1")["Config"]
    assert cfg["WorkingDir"] == "/app" and cfg["User"] == "bob"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}} and cfg["Labels"] == {"purpose": "test"}
    assert cfg["Cmd"] == ["/app/greet.sh"] and "GREETING=hello" in cfg["Env"]
    assert not any(e.startswith("FLAVOUR=") for e in cfg["Env"])  # build args are not image env
    _, hist = clean_daemon.json("GET", f"/images/{name}:1/history")
    created = [h["CreatedBy"] for h in hist]
    assert created[0] == '/bin/sh -c #(nop)  CMD ["/app/greet.sh"]'
    assert any(c.startswith("|1 FLAVOUR=spicy /bin/sh -c chmod 755") for c in created)
    assert any(c.startswith("/bin/sh -c #(nop) COPY file:") and c.endswith(" in ./ ") for c in created)


def test_cached_rebuild_and_changed_file(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": "FROM busybox\nCOPY a /a\nRUN cat /a > /b\nCOPY c /c\nRUN cat /c\nCMD cat /b\n",
                "a": "one\n", "c": "see\n"})
    first = build(clean_daemon, ctx, "-t", name)
    again = build(clean_daemon, ctx, "-t", name)
    assert again.stdout.count(" ---> Using cache") == 5, again.stdout
    assert " ---> Running in" not in again.stdout
    iid = lambda r: r.stdout.split("Successfully built ")[1].split()[0]
    assert iid(first) == iid(again)
    (ctx / "c").write_text("changed\n")
    third = build(clean_daemon, ctx, "-t", name)
    assert third.stdout.count(" ---> Using cache") == 2, third.stdout  # COPY a, RUN cat /a
    assert "changed" in third.stdout
    nocache = build(clean_daemon, ctx, "--no-cache", "-t", name)
    assert "Using cache" not in nocache.stdout
    assert clean_daemon.cli("run", "--rm", name).stdout == "one\n"


def test_multi_stage_target_and_copy_from(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": """\
FROM busybox AS base
RUN echo base > /base.txt
FROM base AS unused
RUN exit 3
FROM busybox AS final
COPY --from=base /base.txt /got/
COPY --from=busybox /bin/busybox /bb
RUN cat /got/base.txt
FROM final AS other
RUN echo other
"""})
    r = build(clean_daemon, ctx, "--target", "final", "-t", name)
    assert "exit 3" not in r.stdout and "echo other" not in r.stdout
    assert "Step 6/6" in r.stdout or "Step 6/" in r.stdout
    run = clean_daemon.cli("run", "--rm", name, "sh", "-c", "cat /got/base.txt; test -x /bb && echo bb")
    assert run.stdout == "base\nbb\n", run.stderr


def test_onbuild_triggers_fire_in_child(clean_daemon, ctx, tmp_path, name):
    write(ctx, {"Dockerfile": "FROM busybox\nONBUILD COPY marker /marker\nONBUILD RUN echo triggered > /t\n",
                "marker": "m\n"})
    build(clean_daemon, ctx, "-t", f"{name}:parent")
    assert inspect(clean_daemon, f"{name}:parent")["Config"]["OnBuild"]
    child = tmp_path / "child"
    child.mkdir()
    write(child, {"Dockerfile": f"FROM {name}:parent\nCMD cat /marker /t\n", "marker": "child\n"})
    r = build(clean_daemon, child, "-t", f"{name}:child")
    assert "# Executing 2 build triggers" in r.stdout
    assert clean_daemon.cli("run", "--rm", f"{name}:child").stdout == "child\ntriggered\n"
    assert not inspect(clean_daemon, f"{name}:child")["Config"].get("OnBuild")


def test_failing_run_leaves_nothing(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": "FROM busybox\nENV X=1\nRUN echo half > /half\nRUN echo boom; exit 7\n"})
    before = clean_daemon.snapshot()
    images_before = clean_daemon.image_ids()
    r = build(clean_daemon, ctx, "--no-cache", "-t", name, check=False)
    assert r.returncode == 7, r.stdout + r.stderr
    assert "boom" in r.stdout and "Step 4/4 failed (Dockerfile:4)" in r.stdout
    assert "The command '/bin/sh -c echo boom; exit 7' returned a non-zero code: 7" in r.stderr
    assert clean_daemon.cli("ps", "-aq").stdout == ""
    assert clean_daemon.image_ids() == images_before
    # cgroup dirs are global and other daemons may run meanwhile: only ours (the RUN containers
    # named in the output) count
    ours = [line.split()[-1] for line in r.stdout.splitlines() if line.startswith(" ---> Running in ")]
    leaks = clean_daemon.snapshot().leaks_since(before)
    assert [x for x in leaks if not x.startswith("cgroup ") or any(c in x for c in ours)] == []
    data = clean_daemon.data_root
    assert os.listdir(os.path.join(data, "build", "tmp")) == []  # no context or mount dir left
    assert [k for k in os.listdir(os.path.join(data, "images", "active")) if k.startswith("build-")] == []


def test_real_docker_cli_legacy_builder(clean_daemon, ctx, name, tmp_path):
    write(ctx, {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f\nCMD [\"cat\", \"/f\"]\n", "f": "docker\n"})
    iid = tmp_path / "iid"
    r = docker_build(clean_daemon, "-t", name, "--iidfile", str(iid), str(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully tagged" in r.stdout and "docker\n" in r.stdout
    assert iid.read_text().startswith("sha256:")
    assert clean_daemon.cli("run", "--rm", name).stdout == "docker\n"
    q = docker_build(clean_daemon, "-q", str(ctx))
    assert q.returncode == 0 and q.stdout.strip() == iid.read_text(), q.stdout + q.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad, {"Dockerfile": "FROM busybox\nRUN exit 4\n"})
    f = docker_build(clean_daemon, str(bad))
    assert f.returncode != 0 and "returned a non-zero code: 4" in f.stderr


def test_docker_py_build(clean_daemon, ctx, name):
    import docker

    write(ctx, {"Dockerfile": "FROM busybox\nRUN echo py > /py\nCMD cat /py\n"})
    api = clean_daemon.api()
    image, logs = api.images.build(path=str(ctx), tag=f"{name}:py")
    assert f"{name}:py" in image.tags
    assert any("Successfully built" in (m.get("stream") or "") for m in logs)
    with pytest.raises(docker.errors.BuildError) as e:
        api.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 1\n"))
    assert any((m.get("errorDetail") or {}).get("code") == 1 for m in e.value.build_log)


def test_buildkit_version_refused(clean_daemon):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"FROM busybox\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    status, _, body = clean_daemon.http("POST", "/build?version=2", buf.getvalue(),
                                        {"Content-Type": "application/x-tar"})
    assert status == 400 and b"BuildKit" in body


def test_hostile_contexts(clean_daemon, ctx, name, tmp_path):
    outside = tmp_path / "secret"
    outside.write_text("host secret\n")
    (ctx / "link").symlink_to(str(outside))
    (ctx / "dirlink").symlink_to(str(tmp_path))
    write(ctx, {"Dockerfile": "FROM busybox\nCOPY ../secret /x\n"})
    r = build(clean_daemon, ctx, check=False)
    assert r.returncode != 0 and "outside the build context" in r.stderr
    # an absolute path is taken inside the context, a symlink is followed only inside it
    for line in (f"COPY {outside} /x", "COPY link /x", "COPY dirlink/secret /x"):
        write(ctx, {"Dockerfile": f"FROM busybox\n{line}\n"})
        r = build(clean_daemon, ctx, check=False)
        assert r.returncode != 0 and "not found" in r.stderr, (line, r.stdout, r.stderr)
    # the links themselves are copied as links: the image never holds the host file
    write(ctx, {"Dockerfile": "FROM busybox\nCOPY . /ctx/\nCMD cat /ctx/link\n"})
    build(clean_daemon, ctx, "-t", name)
    run = clean_daemon.cli("run", "--rm", name)
    assert "host secret" not in run.stdout
    # ADD of a tar whose members climb out: refused, nothing written on the host
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tf:
        for member in ("../../../../../../tmp/dockyard-build-escape", "ok"):
            info = tarfile.TarInfo(member)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"x\n"))
    (ctx / "evil.tar").write_bytes(evil.getvalue())
    write(ctx, {"Dockerfile": "FROM busybox\nADD evil.tar /unpacked/\n"})
    r = build(clean_daemon, ctx, check=False)
    assert r.returncode != 0 and "outside the target directory" in r.stderr, r.stdout + r.stderr
    assert not os.path.exists("/tmp/dockyard-build-escape")


def test_add_extracts_local_tar_and_label_flag(clean_daemon, ctx, name):
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tf:
        info = tarfile.TarInfo("inner/file")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"in\n"))
    (ctx / "good.tgz").write_bytes(good.getvalue())
    write(ctx, {"Dockerfile": "FROM busybox\nADD good.tgz /opt/\nCMD cat /opt/inner/file\n"})
    build(clean_daemon, ctx, "-t", name, "--label", "built.by=dockyard")
    assert clean_daemon.cli("run", "--rm", name).stdout == "in\n"
    assert inspect(clean_daemon, name)["Config"]["Labels"] == {"built.by": "dockyard"}


def test_builder_prune_clears_cache(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": "FROM busybox\nRUN echo cached\n"})
    build(clean_daemon, ctx, "-t", name)
    assert "Using cache" in build(clean_daemon, ctx, "-t", name).stdout
    status, body = clean_daemon.json("POST", "/build/prune")
    assert status == 200 and body["CachesDeleted"]
    assert "Using cache" not in build(clean_daemon, ctx, "-t", name).stdout


def test_cache_survives_daemon_restart_and_stdin_dockerfile(clean_daemon, ctx, name):
    if clean_daemon.external:
        pytest.skip("restarts the daemon")
    dockerfile = "FROM busybox\nRUN echo persisted > /p\nCMD cat /p\n"
    r = clean_daemon.cli("build", "-t", name, "-", input=dockerfile, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    clean_daemon.restart()
    again = clean_daemon.cli("build", "-t", name, "-", input=dockerfile, timeout=120)
    assert again.returncode == 0 and again.stdout.count("Using cache") == 2, again.stdout + again.stderr
    assert clean_daemon.cli("run", "--rm", name).stdout == "persisted\n"


def test_bad_dockerfile_is_one_clear_error(clean_daemon, ctx):
    write(ctx, {"Dockerfile": "FROM busybox\nFORM x\n"})
    r = build(clean_daemon, ctx, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().endswith("Dockerfile:2: unknown instruction: FORM (did you mean FROM?)")
    write(ctx, {"Dockerfile": "FROM no-such-image-here\n"})
    r = build(clean_daemon, ctx, check=False)
    assert r.returncode == 1 and "No such image" in r.stderr


def test_config_keys_chown_chmod_whiteouts_and_scratch(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": """\
FROM busybox
RUN rm /bin/vi && echo 'app:x:500:600::/:/bin/sh' >> /etc/passwd && echo 'grp:x:700:' >> /etc/group
COPY --chown=app:grp --chmod=0640 f /owned
COPY --chown=42 d /dir/
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=5s --retries=2 CMD true
STOPSIGNAL SIGUSR1
VOLUME /data
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["stat -c '%u:%g %a' /owned /dir/sub/x; test -e /bin/vi || echo vi-gone"]
""", "f": "f\n", "d/sub/x": "x\n"})
    build(clean_daemon, ctx, "-t", name)
    cfg = inspect(clean_daemon, name)["Config"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["StopSignal"] == "SIGUSR1" and cfg["Volumes"] == {"/data": {}}
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and cfg["Entrypoint"] == ["/bin/sh", "-c"]
    run = clean_daemon.cli("run", "--rm", name)
    assert run.stdout == "500:700 640\n42:42 644\nvi-gone\n", run.stderr
    write(ctx, {"Dockerfile": "FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh\nCMD [\"/bin/sh\", \"-c\", \"echo scratch\"]\n"})
    build(clean_daemon, ctx, "-t", f"{name}:scratch")
    img = inspect(clean_daemon, f"{name}:scratch")
    assert len(img["RootFS"]["Layers"]) == 1  # only the COPY: scratch adds no layer
    assert clean_daemon.cli("run", "--rm", f"{name}:scratch").stdout == "scratch\n"


def test_client_hangup_stops_build_and_cleans_up(clean_daemon, ctx, name):
    from e2e_util import poll

    write(ctx, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    images_before = clean_daemon.image_ids()
    p = clean_daemon.popen("dockyard", "build", "--no-cache", "-t", name, str(ctx))
    try:
        line = b""
        while b"started" not in line:
            line = p.stdout.readline()
            assert line, p.stderr.read()
    finally:
        p.kill()  # our own child, by PID
        p.wait()
    assert poll(lambda: clean_daemon.cli("ps", "-aq").stdout == "", timeout=20)
    tmp = os.path.join(clean_daemon.data_root, "build", "tmp")
    assert poll(lambda: os.listdir(tmp) == [], timeout=10), os.listdir(tmp)
    assert clean_daemon.image_ids() == images_before


def test_dockerignore_global_args_and_network_none(clean_daemon, ctx, name):
    write(ctx, {"Dockerfile": """\
ARG BASE=busybox
FROM $BASE
ARG DIR=/srv
ENV SUB=files
COPY . $DIR/$SUB/
RUN ls /sys/class/net > /nets
CMD ls -a /srv/files; cat /nets
""", ".dockerignore": "secret*\n!secret-ok\n", "secret.key": "k\n", "secret-ok": "ok\n", "keep": "k\n"})
    build(clean_daemon, ctx, "-t", name, "--network", "none")
    out = clean_daemon.cli("run", "--rm", name).stdout.split()
    assert "keep" in out and "secret-ok" in out and "secret.key" not in out
    assert out[-1] == "lo" and out.count("lo") == 1  # RUN saw only the loopback


def test_cli_stdin_tar_custom_dockerfile_quiet_iidfile(clean_daemon, ctx, name, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, data in (("build/My.df", b"FROM busybox\nCOPY data /data\nCMD cat /data\n"), ("data", b"tar\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    iid = tmp_path / "iid"
    r = clean_daemon.cli("build", "-q", "--iidfile", str(iid), "-f", "build/My.df", "-t", name, "-",
                         input=buf.getvalue(), text=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == iid.read_text() and iid.read_text().startswith("sha256:")
    assert clean_daemon.cli("run", "--rm", name).stdout == "tar\n"
    # -f - : the Dockerfile from stdin, the context from the directory
    write(ctx, {"data": "dir\n"})
    r = clean_daemon.cli("build", "-f", "-", "-t", name, str(ctx), input="FROM busybox\nCOPY data /d\nCMD cat /d\n",
                         timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert clean_daemon.cli("run", "--rm", name).stdout == "dir\n"
    assert clean_daemon.cli("builder", "prune", "-f").returncode == 0
