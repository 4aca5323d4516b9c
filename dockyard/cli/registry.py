"""Registry commands: login, logout, ``registry serve``/``registry gc``, and the credentials file.

Credentials live where Docker keeps them, ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``),
as ``auths[server].auth = base64("user:pass")``, so ``docker`` and ``dockyard`` share logins. The
file is rewritten whole through a temp file and a rename (mode 0600), keeping every key we do not
own. Credential helpers (``credsStore``) are not used. The daemon checks a login (``POST /auth``);
pull and push send the stored credentials as ``X-Registry-Auth``. Standard library only: this is on
the way to ``pull``.
"""

import base64
import getpass
import json
import os
import re
import sys
import tempfile

import click

from dockyard.cli.common import CLIError, client

HUB_SERVER = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def config_path() -> str:
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")


def load_config() -> dict:
    try:
        with open(config_path()) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot read {config_path()}: {e}") from e
    if not isinstance(cfg, dict):
        raise CLIError(f"cannot read {config_path()}: not a JSON object")
    return cfg


def save_config(cfg: dict) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600: passwords stay private
            json.dump(cfg, f, indent="\t")
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def server_key(server: str | None) -> str:
    """The config.json key of a registry: Docker Hub's legacy URL, else the bare host[:port]."""
    if not server:
        return HUB_SERVER
    host = re.sub(r"^https?://", "", server).split("/")[0]
    return HUB_SERVER if host in _HUB_NAMES else host


def domain_of(image: str) -> str:
    """The registry part of an image name, as Docker splits it (``docker.io`` when there is none)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first
    return "docker.io"


def credentials(server: str) -> dict | None:
    """{"username", "password"} (or {"identitytoken"}) stored for ``server``, if any."""
    key = server_key(server)
    for k, entry in (load_config().get("auths") or {}).items():
        if server_key(k) != key or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return {"identitytoken": entry["identitytoken"]}
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise CLIError(f"{config_path()}: invalid auth entry for {k}") from e
            return {"username": user, "password": password}
    return None


def auth_header(image: str) -> dict:
    """``X-Registry-Auth`` for pulling or pushing ``image``: base64url JSON, ``e30=`` ({}) if none."""
    creds = credentials(domain_of(image)) or {}
    if creds:
        creds["serveraddress"] = server_key(domain_of(image))
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(creds).encode()).decode()}


@click.command()
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password (prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.argument("server", required=False)
def login(username, password, password_stdin, server):
    """Log in to a registry (Docker Hub when SERVER is not given)."""
    if password and password_stdin:
        raise CLIError("--password and --password-stdin are mutually exclusive", 125)
    if password_stdin:
        if not username:
            raise CLIError("Must provide --username with --password-stdin", 125)
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    key = server_key(server)
    if not username or not password:
        if not sys.stdin.isatty():
            raise CLIError("Error: Cannot perform an interactive login from a non TTY device")
        if not username:
            username = input("Username: ").strip()
        if not password:
            password = getpass.getpass("Password: ")
    if not username or not password:
        raise CLIError("Error: Non-null Username and Password Required")
    res = client().post("/auth", body={"username": username, "password": password, "serveraddress": key}) or {}
    cfg = load_config()
    entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if res.get("IdentityToken"):  # the registry gave a refresh token: keep it instead of the password
        entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(),
                 "identitytoken": res["IdentityToken"]}
    cfg.setdefault("auths", {})[key] = entry
    save_config(cfg)
    print(res.get("Status") or "Login Succeeded")


@click.command()
@click.argument("server", required=False)
def logout(server):
    """Log out from a registry (remove its stored credentials)."""
    key = server_key(server)
    cfg = load_config()
    auths = cfg.get("auths") or {}
    found = [k for k in auths if server_key(k) == key]
    if not found:
        print(f"Not logged in to {key}")
        return
    print(f"Removing login credentials for {key}")
    for k in found:
        del auths[k]
    save_config(cfg)


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group()
def registry():
    """Run an OCI distribution registry (serve) and collect its garbage (gc)."""


@registry.command(context_settings=_PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(args):
    """Serve a registry: --addr HOST:PORT --root DIR [--htpasswd F [--token-auth]] [--tls-cert C --tls-key K]."""
    from dockyard.registry.server import main as registry_main  # aiohttp: only for this command

    raise SystemExit(registry_main(["serve", *args]))


@registry.command(context_settings=_PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def gc(args):
    """Delete blobs no manifest references: --root DIR [--grace SECONDS] [--dry-run]."""
    from dockyard.registry.server import main as registry_main

    raise SystemExit(registry_main(["gc", *args]))


COMMANDS = [login, logout, registry]
