#!/usr/bin/env bash
# Install dockyard on Debian 12 (as root), start the daemon, import busybox and run hello.
#
#   ./setup.sh                  install, start `dockyard daemon` on /run/dockyard.sock, import
#                               busybox, run `dockyard run --rm busybox echo hello`
#   ./setup.sh --install-only   only the install part (what .ci/run uses); idempotent
#   ./setup.sh --bench          install also the benchmark peers (podman, Debian's dockerd)
#
# Everything is idempotent: apt runs only for missing packages, pip only when the editable install
# of this checkout is missing, and a daemon already answering on the socket is reused.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
REPO=$PWD

MODE=all
case "${1:-}" in
  "") ;;
  --install-only) MODE=install ;;
  --bench) MODE=bench ;;
  *) echo "usage: $0 [--install-only|--bench]" >&2; exit 2 ;;
esac

SOCK=/run/dockyard.sock
LOG=/var/log/dockyard.log
PIDFILE=/run/dockyard-setup.pid   # the daemon this script started (CI stops it by this PID)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "setup.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the runtime needs namespaces, cgroups and mounts"

# --- system packages ------------------------------------------------------------------------
# Runtime: busybox-static (the test/quickstart image), conmon (per-container monitor), tini
# (--init), iproute2 and nftables (networking). Tests: runc cross-checks our OCI runtime; skopeo,
# docker-registry (distribution 2.8) and docker.io (dockerd) are interop peers; curl and pip for
# setup. Bench only: podman, crun and buildah as peers, wrk as the HTTP load.
PKGS=(busybox-static conmon tini iproute2 nftables runc curl ca-certificates python3 python3-pip
      skopeo docker-registry docker.io)
[ "$MODE" = bench ] && PKGS+=(podman crun buildah wrk)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the real docker CLI 28 (the compatibility judge) -------------------------------------------
# It comes with the machine image (/usr/local/bin/docker). Nothing can be downloaded from outside
# the package registries, so when it is missing we say so; Debian's docker.io ships a 20.10 client
# that the tests then use instead.
docker_major() { "$1" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p'; }
if [ "$(docker_major /usr/local/bin/docker)" = "" ] || [ "$(docker_major /usr/local/bin/docker)" -lt 28 ]; then
  echo "setup.sh: warning: no docker CLI >= 28 at /usr/local/bin/docker; compatibility tests will use $(command -v docker || echo none)" >&2
fi

# --- the Python package -----------------------------------------------------------------------
# `python3` is whatever is first on PATH (a pyenv interpreter here, Debian's elsewhere).
PY=$(python3 -c 'import sys; print(sys.executable)')
SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
installed() {
  "$PY" - "$REPO" <<'EOF' 2>/dev/null
import os, sys
import dockyard, h11, click, rich, pyseccomp, pyroute2, aiohttp, bcrypt  # noqa: F401
import pytest, docker, testcontainers, hypothesis  # noqa: F401
assert os.path.realpath(dockyard.__file__).startswith(os.path.realpath(sys.argv[1]) + "/")
EOF
}
if ! installed || [ ! -x "$SCRIPTS/dockyard" ]; then
  log "pip install -e '.[test]'"
  pipflags=()
  # Debian's own interpreter refuses pip without this (PEP 668); this machine is dockyard's.
  "$PY" -c 'import sys,sysconfig,os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' \
    && pipflags+=(--break-system-packages)
  # editable_mode=compat: a plain path entry instead of an import-hook finder, ~8 ms less on
  # every interpreter start (the CLI and `dockyard-runtime create` are on the container-start path).
  "$PY" -m pip install -q ${pipflags[@]+"${pipflags[@]}"} --config-settings editable_mode=compat -e "$REPO[test]"
fi
# This environment may set PYTHONDONTWRITEBYTECODE; stale or missing .pyc files would then cost
# every CLI and runtime start a recompile.
"$PY" -m compileall -q "$REPO/dockyard" >/dev/null
# The `dockyard` command starts without `site` (its .pth files cost 5-30 ms per CLI call); the
# launcher replaces pip's console script in place (dockyard/cli/launcher.py).
"$PY" -m dockyard.cli.launcher "$SCRIPTS/dockyard"

# --- make `dockyard` on PATH the real console script ----------------------------------------
# A pyenv shim (bash + `pyenv exec`) costs ~150 ms per call and comes first on PATH, so a symlink
# in /usr/local/{s,}bin would never be reached. We replace the shim itself with a symlink to the
# console script: `pyenv rehash` only creates shims that do not exist, so the symlink survives pip
# installs (re-run setup.sh after upgrading pyenv or switching the Python version).
for name in dockyard dockyard-runtime; do
  real="$SCRIPTS/$name"
  found=$(type -P "$name" || true)
  if [ -z "$found" ]; then
    ln -sfn "$real" "/usr/local/bin/$name"
  elif [ "$(readlink -f "$found")" != "$(readlink -f "$real")" ]; then
    if grep -qs 'pyenv" exec' "$found"; then
      ln -sfn "$real" "$found"
    else
      ln -sfn "$real" "/usr/local/bin/$name"
      echo "setup.sh: note: $found precedes /usr/local/bin/$name on PATH" >&2
    fi
  fi
done
hash -r

[ "$MODE" = all ] || { log "installed ($MODE)"; exit 0; }

# --- daemon, image, hello --------------------------------------------------------------------
ping() { curl -sf --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
if ! ping; then
  log "starting dockyard daemon (log: $LOG)"
  # setsid: the daemon must not die with this shell's session; its PID is $! (setsid execs).
  setsid "$SCRIPTS/dockyard" daemon --host "unix://$SOCK" </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 100); do ping && break; sleep 0.1; done
  ping || { tail -n 20 "$LOG" >&2; die "the daemon did not answer on $SOCK"; }
fi

if ! "$SCRIPTS/dockyard" image inspect busybox >/dev/null 2>&1; then
  log "importing busybox (from Debian's busybox-static)"
  tar=$(mktemp --suffix=.tar)
  "$PY" scripts/busybox-tar.py "$tar" >/dev/null
  "$SCRIPTS/dockyard" import "$tar" busybox:latest >/dev/null || { rm -f "$tar"; die "import failed"; }
  rm -f "$tar"
fi

log "dockyard run --rm busybox echo hello"
"$SCRIPTS/dockyard" run --rm busybox echo hello
