"""Pull, push and login end to end: our daemon and a dockyard registry (both real subprocesses),
driven by the dockyard CLI, the real docker CLI and docker-py.

Each test imports an image with a layer of its own (busybox plus a unique file), so a pull after
``rmi`` really downloads, and registries listen on free loopback ports (plain HTTP is allowed for
loopback). Registries are stopped by PID; DOCKER_CONFIG points at a per-test directory.
"""

import base64
import io
import json
import os
import shutil
import subprocess
import sysconfig
import tarfile
import tempfile

import pytest

from e2e_util import ok

DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")
DOCKER = next((c for c in (os.environ.get("DYT_DOCKER"), "/usr/local/bin/docker", shutil.which("docker"))
               if c and os.access(c, os.X_OK)), "docker")

pytestmark = pytest.mark.privileged


class Registry:
    """``dockyard registry serve`` on 127.0.0.1:<free port> with a temp root."""

    def __init__(self, *opts):
        self.root = tempfile.mkdtemp(prefix="dyt-reg-")
        self.proc = subprocess.Popen([DOCKYARD, "registry", "serve", "--addr", "127.0.0.1:0",
                                      "--root", self.root, *opts],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"registry did not start: {line!r}")
        self.host = line.split()[-1].replace("127.0.0.1", "localhost")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def registry():
    started = []

    def start(*opts):
        r = Registry(*opts)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.fixture
def config_dir(tmp_path):
    d = tmp_path / "docker-config"
    d.mkdir()
    return str(d)


def dy(daemon, config_dir, *args, input=None):
    """The dockyard CLI with its own DOCKER_CONFIG (where login keeps credentials)."""
    env = {**os.environ, "DOCKER_CONFIG": config_dir}
    return subprocess.run([DOCKYARD, "-H", daemon.host, *args], input=input, capture_output=True,
                           text=True, timeout=120, env=env, stdin=None if input else subprocess.DEVNULL)


def docker(daemon, config_dir, *args, input=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = config_dir
    return subprocess.run([DOCKER, "-H", daemon.host, *args], input=input, capture_output=True,
                          text=True, timeout=120, env=env, stdin=None if input else subprocess.DEVNULL)


@pytest.fixture
def unique_image(clean_daemon, busybox_tar, tmp_path, name):
    """Import busybox plus /marker (a layer no other image has); returns a function tagging it."""
    path = str(tmp_path / "rootfs.tar")
    shutil.copy(busybox_tar, path)
    with tarfile.open(path, "a") as tf:
        data = name.encode()
        ti = tarfile.TarInfo("marker")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))

    def make(ref):
        ok(clean_daemon.cli("import", "-c", 'CMD ["sh"]', path, ref))
        return ref
    return make


def test_dockyard_push_rmi_pull_run(clean_daemon, registry, unique_image, config_dir):
    reg = registry()
    ref = unique_image(f"{reg.host}/bb:1")
    out = ok(dy(clean_daemon, config_dir, "push", ref))
    assert f"The push refers to repository [{reg.host}/bb]" in out
    assert "Pushed" in out and "1: digest: sha256:" in out
    ok(clean_daemon.cli("rmi", ref))
    r = dy(clean_daemon, config_dir, "pull", ref)
    out = ok(r)
    for want in ("1: Pulling from bb", "Pulling fs layer", "Download complete", "Pull complete",
                 "Digest: sha256:", f"Status: Downloaded newer image for {ref}"):
        assert want in out, out
    assert out.splitlines()[-1] == ref  # the canonical reference, as docker prints it
    assert "Downloading" not in out  # progress lines are for terminals only
    assert ok(clean_daemon.cli("run", "--rm", ref, "cat", "/marker")).strip()
    # Pulled again: nothing to download.
    out = ok(dy(clean_daemon, config_dir, "pull", ref))
    assert f"Status: Image is up to date for {ref}" in out
    assert ok(dy(clean_daemon, config_dir, "pull", "-q", ref)) == ref + "\n"
    # -a: every tag of the repository, both ways.
    ok(clean_daemon.cli("tag", ref, f"{reg.host}/bb:2"))
    out = ok(dy(clean_daemon, config_dir, "push", "-a", f"{reg.host}/bb"))
    assert "1: digest: sha256:" in out and "2: digest: sha256:" in out
    ok(clean_daemon.cli("rmi", ref, f"{reg.host}/bb:2"))
    out = ok(dy(clean_daemon, config_dir, "pull", "-a", f"{reg.host}/bb"))
    assert out.splitlines()[-1] == f"{reg.host}/bb"
    tags = ok(clean_daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}", f"{reg.host}/bb")).split()
    assert sorted(tags) == [ref, f"{reg.host}/bb:2"]


def test_run_pulls_with_progress(clean_daemon, registry, unique_image, config_dir):
    reg = registry()
    ref = unique_image(f"{reg.host}/runme:1")
    ok(dy(clean_daemon, config_dir, "push", ref))
    ok(clean_daemon.cli("rmi", ref))
    r = clean_daemon.cli("run", "--rm", ref, "echo", "hello")
    assert ok(r) == "hello\n"
    assert f"Unable to find image '{ref}' locally" in r.stderr
    assert "Pull complete" in r.stderr and "Status: Downloaded newer image" in r.stderr


def test_docker_cli_push_pull_through_our_daemon(clean_daemon, registry, unique_image, config_dir):
    reg = registry()
    ref = unique_image(f"{reg.host}/viadocker:2")
    r = docker(clean_daemon, config_dir, "push", ref)
    out = ok(r)
    assert f"The push refers to repository [{reg.host}/viadocker]" in out
    assert "2: digest: sha256:" in out and "Pushed" in out
    ok(docker(clean_daemon, config_dir, "rmi", ref))
    out = ok(docker(clean_daemon, config_dir, "pull", ref))
    assert "Pull complete" in out and "Digest: sha256:" in out and out.splitlines()[-1] == ref
    assert ok(docker(clean_daemon, config_dir, "run", "--rm", ref, "cat", "/marker")).strip()


def test_docker_py_push_and_pull(clean_daemon, registry, unique_image):
    reg = registry()
    repo = f"{reg.host}/py"
    unique_image(f"{repo}:3")
    api = clean_daemon.api()
    lines = [json.loads(x) for x in api.images.push(repo, tag="3").splitlines() if x.strip()]
    assert not [x for x in lines if "error" in x], lines
    aux = [x["aux"] for x in lines if "aux" in x]
    assert aux and aux[0]["Tag"] == "3" and aux[0]["Digest"].startswith("sha256:") and aux[0]["Size"] > 0
    api.images.remove(f"{repo}:3")
    img = api.images.pull(repo, tag="3")
    assert f"{repo}:3" in img.tags
    events = list(api.api.pull(repo, tag="3", stream=True, decode=True))
    assert events[-1]["status"] == f"Status: Image is up to date for {repo}:3"
    by_digest = api.images.pull(repo, tag=aux[0]["Digest"])
    assert by_digest.id == img.id


def _htpasswd(path, user="alice", password="s3cret"):
    import bcrypt

    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode().replace("$2b$", "$2y$", 1)
    with open(path, "w") as f:
        f.write(f"{user}:{h}\n")
    return path


@pytest.mark.parametrize("token", [False, True], ids=["basic", "token"])
def test_login_then_push_and_pull(clean_daemon, registry, unique_image, config_dir, tmp_path, token):
    reg = registry("--htpasswd", _htpasswd(str(tmp_path / "htpasswd")), *(["--token-auth"] if token else []))
    ref = unique_image(f"{reg.host}/private:1")
    r = dy(clean_daemon, config_dir, "push", ref)
    assert r.returncode == 1 and "Error" in r.stderr  # not logged in
    r = dy(clean_daemon, config_dir, "login", "-u", "alice", "--password-stdin", reg.host, input="wrong\n")
    assert r.returncode == 1 and ("401 Unauthorized" in r.stderr or "refused the credentials" in r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(config_dir, "config.json"))
    out = ok(dy(clean_daemon, config_dir, "login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n"))
    assert "Login Succeeded" in out
    with open(os.path.join(config_dir, "config.json")) as f:
        auths = json.load(f)["auths"]
    assert base64.b64decode(auths[reg.host]["auth"]) == b"alice:s3cret"
    assert os.stat(os.path.join(config_dir, "config.json")).st_mode & 0o077 == 0
    ok(dy(clean_daemon, config_dir, "push", ref))
    ok(clean_daemon.cli("rmi", ref))
    assert "Pull complete" in ok(dy(clean_daemon, config_dir, "pull", ref))
    # The real docker CLI logs in through our daemon's /auth, to its own config dir.
    other = str(tmp_path / "docker-cli-config")
    os.mkdir(other)
    r = docker(clean_daemon, other, "login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n")
    assert "Login Succeeded" in ok(r)
    r = docker(clean_daemon, other, "login", "-u", "alice", "--password-stdin", reg.host, input="bad\n")
    assert r.returncode != 0
    ok(clean_daemon.cli("rmi", ref))
    assert "Pull complete" in ok(docker(clean_daemon, other, "pull", ref))
    assert f"Removing login credentials for {reg.host}" in ok(dy(clean_daemon, config_dir, "logout", reg.host))
    with open(os.path.join(config_dir, "config.json")) as f:
        assert reg.host not in json.load(f).get("auths", {})


def test_pull_of_missing_repository_is_404(clean_daemon, registry, config_dir):
    reg = registry()
    r = dy(clean_daemon, config_dir, "pull", f"{reg.host}/nosuchrepo:1")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"Error response from daemon: pull access denied for {reg.host}/nosuchrepo, "
                                "repository does not exist or may require 'docker login'")
    r = docker(clean_daemon, config_dir, "pull", f"{reg.host}/nosuchrepo:1")
    assert r.returncode == 1 and "pull access denied" in r.stderr
    status, _, body = clean_daemon.http("POST", f"/images/create?fromImage={reg.host}/nosuchrepo&tag=1")
    assert status == 404 and b"pull access denied" in body


def test_offline_hub_answers_fast(clean_daemon, config_dir):
    # busybox:latest exists locally (imported by the fixture); Docker Hub is out of reach here.
    r = dy(clean_daemon, config_dir, "pull", "busybox")
    assert "Status: Image is up to date for busybox:latest" in ok(r)
    r = dy(clean_daemon, config_dir, "pull", "nosuchimage-dyt:1")
    assert r.returncode == 1 and "pull access denied for nosuchimage-dyt" in r.stderr


def test_corrupt_blob_fails_cleanly(clean_daemon, registry, unique_image, config_dir):
    reg = registry()
    ref = unique_image(f"{reg.host}/corrupt:1")
    ok(dy(clean_daemon, config_dir, "push", ref))
    manifest = json.loads(ok(subprocess.run(["curl", "-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                                             f"http://{reg.host}/v2/corrupt/manifests/1"], capture_output=True, text=True)))
    ok(clean_daemon.cli("rmi", ref))
    before = clean_daemon.image_ids()
    # Flip bytes in the middle of the unique layer, keeping its size.
    layer = manifest["layers"][-1]["digest"]
    blob = os.path.join(reg.root, "blobs", "sha256", layer[7:])
    with open(blob, "r+b") as f:
        f.seek(os.path.getsize(blob) // 2)
        f.write(b"\xde\xad\xbe\xef" * 4)
    r = dy(clean_daemon, config_dir, "pull", ref)
    assert r.returncode == 1
    assert layer in r.stderr or "digest" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert clean_daemon.image_ids() == before
    assert ref not in ok(clean_daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}"))


def test_push_of_missing_image_and_bad_names(clean_daemon, registry, config_dir):
    reg = registry()
    r = dy(clean_daemon, config_dir, "push", f"{reg.host}/absent:1")
    assert r.returncode == 1 and "An image does not exist locally with the tag" in r.stderr
    r = dy(clean_daemon, config_dir, "pull", "Bad//Name")
    assert r.returncode != 0 and "invalid reference format" in r.stderr


def test_bad_auth_header_is_400(clean_daemon, registry):
    reg = registry()
    status, _, body = clean_daemon.http("POST", f"/images/create?fromImage={reg.host}/x&tag=1",
                                        headers={"X-Registry-Auth": "%%%not-base64"})
    assert status == 400 and b"X-Registry-Auth" in body
    status, _, body = clean_daemon.http("POST", "/auth", b'{"username": "u", "password": "p", "serveraddress": ""}',
                                        {"Content-Type": "application/json"})
    assert status in (401, 404, 503)  # Docker Hub: out of reach here, never a false "Login Succeeded"


# -- the pure parts of the API layer (no daemon) ------------------------------------------------------

def _req(header):
    from dockyard.api.server import Request

    return Request(None, "POST", "/images/create", {}, {"x-registry-auth": header} if header else {}, {})


def test_registry_auth_header_decoding():
    from dockyard.api.images import registry_auth

    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode()  # noqa: E731
    assert registry_auth(_req(None)) is None
    assert registry_auth(_req("e30=")) is None and registry_auth(_req("e30")) is None
    assert registry_auth(_req(enc({"username": "a", "password": "b", "serveraddress": "h"}))) == \
        {"username": "a", "password": "b"}
    assert registry_auth(_req(enc({"auth": base64.b64encode(b"u:p:q").decode()}))) == {"username": "u", "password": "p:q"}
    assert registry_auth(_req(enc({"identitytoken": "t"}))) == {"identitytoken": "t"}
    from dockyard.errdefs import InvalidArgument
    for bad in ("!!!", base64.urlsafe_b64encode(b"[1]").decode(), base64.urlsafe_b64encode(b"{").decode()):
        with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
            registry_auth(_req(bad))


def test_progress_messages_are_shaped_like_moby():
    from dockyard.api.images import _Messages, progress_bar

    m = _Messages()
    dl = m({"status": "Downloading", "id": "abc", "progressDetail": {"current": 5, "total": 10}})
    assert dl[0]["progress"].startswith("[" + "=" * 25 + ">") and dl[0]["progress"].endswith("5B/10B")
    done = m({"status": "Pull complete", "id": "abc", "progressDetail": {}})
    assert [x["status"] for x in done] == ["Extracting", "Pull complete"]
    assert done[0]["progressDetail"] == {"current": 10, "total": 10}
    aux = m({"status": "1: digest: sha256:x size: 5", "aux": {"Tag": "1"}})
    assert aux == [{"status": "1: digest: sha256:x size: 5"}, {"progressDetail": {}, "aux": {"Tag": "1"}}]
    assert progress_bar(1_500_000, 3_000_000).endswith("1.5MB/3MB")


def test_repo_digests_recorded_by_push_and_pull(clean_daemon, registry, unique_image, config_dir):
    """Docker keeps `repo@sha256:...` in RepoDigests after a push or a pull; `images --digests`
    shows it, the image is reachable by it, and rmi prints it as untagged."""
    reg = registry()
    ref = unique_image(f"{reg.host}/dig:1")
    out = ok(docker(clean_daemon, config_dir, "push", ref))
    digest = out.split("1: digest: ")[1].split()[0]
    pinned = f"{reg.host}/dig@{digest}"
    inspect = lambda r: json.loads(ok(docker(clean_daemon, config_dir, "image", "inspect", r)))[0]
    assert inspect(ref)["RepoDigests"] == [pinned]
    ok(docker(clean_daemon, config_dir, "rmi", ref))
    out = ok(docker(clean_daemon, config_dir, "pull", ref))
    assert f"Digest: {digest}" in out
    assert inspect(ref)["RepoDigests"] == [pinned]
    assert inspect(pinned)["Id"] == inspect(ref)["Id"]
    rows = ok(docker(clean_daemon, config_dir, "images", "--digests", "--format",
                     "{{.Repository}} {{.Tag}} {{.Digest}}", f"{reg.host}/dig")).splitlines()
    assert rows == [f"{reg.host}/dig 1 {digest}"]
    assert ok(docker(clean_daemon, config_dir, "run", "--rm", pinned, "cat", "/marker")).strip()
    out = ok(docker(clean_daemon, config_dir, "rmi", ref))
    assert f"Untagged: {ref}" in out and f"Untagged: {pinned}" in out and "Deleted: sha256:" in out
    r = docker(clean_daemon, config_dir, "image", "inspect", pinned)
    assert r.returncode != 0 and "No such image" in r.stderr
