"""Image commands: import, images, tag, rmi, history, image inspect/prune, save, load, pull, push."""

import os
import stat
import sys
import tempfile
import time

import click

from dockyard.cli.client import filters_param, quote
from dockyard.cli.common import CLIError, client, confirm, for_each, split_ref
from dockyard.cli.format import check_format, ellipsis, human_size, render_rows, since, truncate_id


def _print_stream(messages, quiet=False):
    """Render a JSON message stream (import/load/pull) the way docker does on a non-tty."""
    for msg in messages:
        if msg.get("errorDetail") or msg.get("error"):
            raise CLIError((msg.get("errorDetail") or {}).get("message") or msg["error"])
        if quiet:
            continue
        if "stream" in msg:
            sys.stdout.write(msg["stream"])
        elif msg.get("status") and not msg.get("progressDetail"):
            print(f"{msg['id']}: {msg['status']}" if msg.get("id") else msg["status"])
    sys.stdout.flush()


def _body_for(path: str):
    """(file object, headers): a regular file is sent with its length, stdin/pipes chunked."""
    f = sys.stdin.buffer if path == "-" else open(path, "rb")
    st = os.fstat(f.fileno())
    headers = {"Content-Type": "application/x-tar"}
    if stat.S_ISREG(st.st_mode):
        headers["Content-Length"] = str(st.st_size - f.tell())
    return f, headers


@click.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-m", "--message", help="Commit message for the imported image")
@click.option("-c", "--change", multiple=True, help="Dockerfile instruction to apply")
def import_(source, reference, message, change):
    """Import a rootfs tarball (path or '-' for stdin) as an image."""
    repo, tag = split_ref(reference) if reference else (None, None)
    try:
        body, headers = _body_for(source)
    except OSError as e:
        raise CLIError(f"open {source}: {e.strerror.lower()}") from e
    params = {"fromSrc": "-", "repo": repo, "tag": tag or None, "message": message,
              "changes": list(change) or None}
    with body:
        _print_stream(client().stream_json("POST", "/images/create", params, body, headers))


IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                  "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
                  "VirtualSize": "VIRTUAL SIZE"}


def image_rows(items, trunc=True, now=None, digests=False) -> list[dict]:
    """One row per tag (docker's images formatter); untagged images show <none>. Digests are
    filled only when asked for (--digests or a format using .Digest), as docker does."""
    rows = []
    for im in items:
        iid = truncate_id(im["Id"]) if trunc else im["Id"]
        repo_digests = {split_ref(d.split("@")[0])[0]: d.split("@", 1)[1]
                   for d in im.get("RepoDigests") or [] if "@" in d}
        tags = [t for t in im.get("RepoTags") or [] if t != "<none>:<none>"]
        pairs = [split_ref(t) for t in tags] or [(next(iter(repo_digests), "<none>"), "<none>")]
        for repo, tag in pairs:
            rows.append({
                "Repository": repo, "Tag": tag or "<none>", "ID": iid,
                "Digest": repo_digests.get(repo, "<none>") if digests else "<none>",
                "CreatedSince": since(im.get("Created", 0), now),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(im.get("Created", 0))),
                "Size": human_size(im.get("Size", 0)),
                "VirtualSize": human_size(im.get("Size", 0), 4),
                "Containers": "N/A" if im.get("Containers", -1) < 0 else str(im["Containers"]),
                "SharedSize": "N/A" if im.get("SharedSize", -1) < 0 else human_size(im["SharedSize"]),
                "UniqueSize": "N/A" if im.get("SharedSize", -1) < 0
                else human_size(im.get("Size", 0) - im["SharedSize"]),
            })
    return rows


@click.command()
@click.argument("reference", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (including intermediate)")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=, reference=, label=")
@click.option("--format", "fmt", help="Go template, 'table ...' or 'json'")
def images(reference, all_, quiet, digests, no_trunc, filters, fmt):
    """List images."""
    check_format(fmt)
    filters = list(filters) + ([f"reference={reference}"] if reference else [])
    try:
        f = filters_param(filters)
    except ValueError as e:
        raise CLIError(str(e)) from e
    items = client().get("/images/json", {"all": 1 if all_ else None, "filters": f}) or []
    if quiet:
        fmt = "{{.ID}}"  # one line per tag, as docker prints them
    if not fmt or fmt == "table":
        fmt = IMAGES_DIGESTS if digests else IMAGES_TABLE
    rows = image_rows(items, not no_trunc, digests=digests or ".Digest" in fmt)
    sys.stdout.write(render_rows(fmt, rows, IMAGES_HEADERS))


@click.command()
@click.argument("source")
@click.argument("target")
def tag(source, target):
    """Create a tag TARGET that refers to SOURCE."""
    if "@" in target:
        raise CLIError("refusing to create a tag with a digest reference")
    repo, t = split_ref(target)
    client().call("POST", f"/images/{quote(source)}/tag", {"repo": repo, "tag": t or "latest"})


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force removal")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("images", nargs=-1, required=True)
def rmi(force, no_prune, images):
    """Remove one or more images."""
    c = client()
    params = {"force": 1 if force else None, "noprune": 1 if no_prune else None}

    def one(name):
        for item in c.delete(f"/images/{quote(name)}", params) or []:
            for k, v in item.items():
                print(f"{k}: {v}")
    for_each(images, one)


@click.command()
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("-H", "--human", type=bool, default=True, help="Sizes and dates in human format")
@click.option("--format", "fmt", help="Go template")
@click.argument("image")
def history(no_trunc, quiet, human, fmt, image):
    """Show the history of an image."""
    items = client().get(f"/images/{quote(image)}/history") or []
    rows = []
    for h in items:
        hid = h.get("Id", "")
        if hid != "<missing>" and not no_trunc:
            hid = truncate_id(hid)
        created_by = h.get("CreatedBy", "").replace("\t", " ")
        rows.append({"ID": hid,
                     "CreatedSince": since(h.get("Created", 0)) if human else
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h.get("Created", 0))),
                     "CreatedBy": created_by if no_trunc else ellipsis(created_by, 45),
                     "Size": human_size(h.get("Size", 0)) if human else str(h.get("Size", 0)),
                     "Comment": h.get("Comment", "")})
    if quiet:
        fmt = "{{.ID}}"
    fmt = fmt or "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    sys.stdout.write(render_rows(fmt, rows, {"ID": "IMAGE", "CreatedSince": "CREATED",
                                             "CreatedBy": "CREATED BY", "Size": "SIZE",
                                             "Comment": "COMMENT"}))


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Filters (until=, label=)")
def prune(all_, force, filters):
    """Remove unused images."""
    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if all_ else "WARNING! This will remove all dangling images.")
    if not confirm(warning, force):
        return
    f = filters_param(list(filters) + [f"dangling={'false' if all_ else 'true'}"])
    res = client().post("/images/prune", {"filters": f}) or {}
    deleted = res.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for item in deleted:
            for k, v in item.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")


@click.command()
@click.option("-o", "--output", help="Write to a file instead of stdout")
@click.argument("images", nargs=-1, required=True)
def save(output, images):
    """Save images to a tar archive (docker-archive format)."""
    if not output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = client().open("GET", "/images/get", {"names": list(images)}, own_conn=True)
    if not output:
        while chunk := resp.read1(1 << 20):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    # A temp file renamed into place: a failed save leaves neither a partial tar nor a stray file.
    out_dir = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".dockyard-save-", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            while chunk := resp.read1(1 << 20):
                f.write(chunk)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise


class _Progress:
    """A file wrapper that advances a rich progress bar as the tar is read (stderr tty only)."""

    def __init__(self, f, total):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TransferSpeedColumn)

        self.f = f
        self.progress = Progress(TextColumn("Loading"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=Console(stderr=True), redirect_stdout=False,
                                 redirect_stderr=False, transient=True)
        self.task = self.progress.add_task("load", total=total)
        self.progress.start()

    def read(self, n=-1):
        data = self.f.read(n)
        self.progress.advance(self.task, len(data))
        return data

    def close(self):
        self.progress.stop()


@click.command()
@click.option("-i", "--input", "path", default="-", help="Read from a tar file instead of stdin")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
def load(path, quiet):
    """Load images from a tar archive (docker-archive or OCI layout)."""
    try:
        body, headers = _body_for(path)
    except OSError as e:
        raise CLIError(f"open {path}: {e.strerror.lower()}") from e
    if path == "-" and sys.stdin.isatty():
        raise CLIError("requested load from stdin, but stdin is empty")
    reader = body
    if not quiet and sys.stderr.isatty() and "Content-Length" in headers:
        reader = _Progress(body, int(headers["Content-Length"]))
    try:
        _print_stream(client().stream_json("POST", "/images/load", {"quiet": 1}, reader, headers),
                      quiet)
    finally:
        if reader is not body:
            reader.close()
        body.close()


class _TransferView:
    """pull/push progress on a terminal: a rich bar per layer and one for the total. Lines without
    a layer id (and "Pulling from") are printed as docker prints them: one that follows some bars
    freezes them first (Digest, Status), so the output reads top to bottom."""

    DONE = {"Download complete", "Pull complete", "Already exists", "Pushed", "Layer already exists"}

    def __init__(self):
        self.progress = None
        self.layers: dict[str, tuple[int, int, int]] = {}  # id -> (task, current, total)
        self.total_task = None

    def _start(self):
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 console=Console(), transient=False)
        self.layers, self.total_task = {}, None
        self.progress.start()

    def feed(self, msg: dict):
        lid, status = msg.get("id"), msg.get("status", "")
        if not lid or status.startswith("Pulling from"):
            self.close()
            if status:
                print(f"{lid}: {status}" if lid else status, flush=True)
            return
        if self.progress is None:
            self._start()
        detail = msg.get("progressDetail") or {}
        task, current, total = self.layers.get(lid) or (None, 0, 0)
        if task is None:
            task = self.progress.add_task(lid, total=None)
        if detail.get("total") and status != "Extracting":
            current, total = detail.get("current", 0), detail["total"]
        elif status in self.DONE and total:
            current = total
        self.layers[lid] = (task, current, total)
        self.progress.update(task, description=f"{lid}: {status}", completed=current, total=total or None)
        known = [(c, t) for _, c, t in self.layers.values() if t]
        if len(self.layers) > 1 and known:
            if self.total_task is None:
                self.total_task = self.progress.add_task("Total")
            self.progress.update(self.total_task, completed=sum(c for c, _ in known),
                                 total=sum(t for _, t in known))

    def close(self):
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None


def show_transfer(messages, quiet=False):
    """Render a pull/push stream: bars on a terminal, docker's ``id: status`` lines otherwise."""
    if quiet or not sys.stdout.isatty():
        _print_stream(messages, quiet)
        return
    view = _TransferView()
    try:
        for msg in messages:
            if msg.get("errorDetail") or msg.get("error"):
                raise CLIError((msg.get("errorDetail") or {}).get("message") or msg["error"])
            view.feed(msg)
    finally:
        view.close()


def _parse_ref(name: str):
    from dockyard.images import reference
    from dockyard.errdefs import InvalidArgument

    try:
        return reference.parse(name)
    except InvalidArgument as e:
        raise CLIError(f"{e}") from e


@click.command()
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", help="Pull this platform (os/arch[/variant]) of a multi-platform image")
@click.argument("name")
def pull(all_tags, quiet, platform, name):
    """Download an image (NAME[:TAG|@DIGEST]) from a registry."""
    from dockyard.cli.registry import auth_header

    ref = _parse_ref(name)
    if all_tags and (ref.tag or ref.digest):
        raise CLIError("tag can't be used with --all-tags/-a", 125)
    tag = None if all_tags else (ref.digest or ref.tag or "latest")
    params = {"fromImage": ref.name, "tag": tag, "platform": platform}
    show_transfer(client().stream_json("POST", "/images/create", params, headers=auth_header(ref.name)), quiet)
    if all_tags:
        print(ref.name)
    else:
        print(ref.name + ("@" + ref.digest if ref.digest else ":" + tag))


@click.command()
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("name")
def push(all_tags, quiet, name):
    """Upload an image (NAME[:TAG]) to its registry."""
    from dockyard.cli.registry import auth_header

    ref = _parse_ref(name)
    if ref.digest:
        raise CLIError("cannot push a digest reference", 125)
    if all_tags and ref.tag:
        raise CLIError("tag can't be used with --all-tags/-a", 125)
    tag = None if all_tags else (ref.tag or "latest")
    show_transfer(client().stream_json("POST", f"/images/{quote(ref.familiar_name)}/push", {"tag": tag},
                                       headers=auth_header(ref.name)), quiet)
    if quiet:
        print(ref.familiar() if ref.tag else ref.familiar_name + (f":{tag}" if tag else ""))


COMMANDS = [import_, images, tag, rmi, history, save, load, pull, push]
IMAGE_ALIASES = {"import": import_, "ls": images, "list": images, "tag": tag, "rm": rmi,
                 "remove": rmi, "history": history, "save": save, "load": load, "prune": prune,
                 "pull": pull, "push": push}
