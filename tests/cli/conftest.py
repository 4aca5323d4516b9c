"""Fixtures for the CLI tests.

``cli_daemon`` is the shared ``clean_daemon`` (tests/conftest.py): a real dockyard daemon, with
what each test made removed afterwards. Setting ``DYT_CLI_HOST=unix:///path.sock`` runs the same
tests against a daemon that is already running instead (e.g. a dockerd, to check that the tests
expect what Docker does; with an older dockerd also set ``DOCKYARD_API_VERSION``). That daemon
must have ``busybox:latest``; containers and volumes the test made are removed by the fixture.
"""

import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

# The console script of the interpreter running the tests (the pyenv shim costs ~150 ms a call).
DOCKYARD = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "dockyard")
DOCKER = "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else shutil.which("docker")


class ExternalDaemon:
    def __init__(self, host):
        self.host = host

    def cli(self, *args, input=None, check=False, timeout=60, text=None):
        text = not isinstance(input, bytes) if text is None else text
        return subprocess.run([DOCKYARD, "-H", self.host, *args], input=input, capture_output=True,
                              text=text, check=check, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def docker(self, *args, timeout=60):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return subprocess.run([DOCKER, "-H", self.host, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)

    def inventory(self):
        ids = set(self.cli("ps", "-aq", "--no-trunc").stdout.split())
        vols = set(self.cli("volume", "ls", "-q").stdout.split())
        return ids, vols


@pytest.fixture
def cli_daemon(request):
    host = os.environ.get("DYT_CLI_HOST")
    if not host:
        yield request.getfixturevalue("clean_daemon")
        return
    d = ExternalDaemon(host)
    before_ids, before_vols = d.inventory()
    yield d
    ids, vols = d.inventory()
    if ids - before_ids:
        d.cli("rm", "-f", "-v", *(ids - before_ids))
    if vols - before_vols:
        d.cli("volume", "rm", "-f", *(vols - before_vols))


@pytest.fixture
def name(request):
    """A container/volume name unique to this test invocation."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", request.node.name.lower()).strip("-")[:24]
    return f"cli-{base}-{uuid.uuid4().hex[:6]}"
