"""images: the content-addressed image store and the snapshots containers run on.

Layout under ``root`` (``<data-root>/images``):
    blobs/sha256/<hex>     every blob (layers as stored compressed or not, configs, manifests);
                           written to tmp/, fsynced, digest and size checked, renamed, dir fsynced
    snapshots/<n>/fs       one unpacked layer, shared by every image using it (overlay lowerdir)
    active/<key>/{upper,work}  a container's writable layer (overlay upperdir/workdir)
    images.db              SQLite: images (id = config digest, manifest digest), tags, layers ->
                           snapshot, refcounts. Everything but blobs can be rebuilt from blobs.
    tmp/

Interface the engine and the API use (synchronous; the engine calls it from worker threads):

    store = ImageStore(root)
    store.resolve(ref) -> Image          # 'busybox', 'busybox:1', 'docker.io/library/busybox:latest',
                                         # 'name@sha256:...', 'sha256:<hex>', '<hex>', unique hex prefix
                                         # NotFound('No such image: busybox:latest')
    store.list() -> list[Image]
    store.tag(ref, new_ref)              # InvalidArgument for a bad reference
    store.untag(ref) -> list[dict]       # `docker rmi <name>`: removes the tag; with its last tag
                                         # the image goes too unless a rootfs (prepare_rootfs) or a
                                         # child image uses it (then it stays, dangling)
    store.delete(ref, force=False, noprune=False) -> list[dict]   # `docker rmi` semantics: a name
                                         # untags and the image goes with its last tag; an ID with
                                         # several tags -> Conflict unless force. ref: any resolve()
                                         # form (an image ID, as before, still works).
                                         # -> [{"Untagged": "busybox:latest"}, {"Deleted": "sha256:..."}]
    store.import_rootfs(fileobj, ref|None, changes=(), message="") -> Image   # docker import
    store.load(fileobj, progress=None) -> list[str]     # docker-archive or OCI layout tar;
                                                        # returns "busybox:latest" or "sha256:<id>";
                                                        # progress(dict) gets Docker JSON-message
                                                        # dicts {"status","id","progressDetail"}
    store.save(refs, fileobj, fmt="docker-archive"|"oci")
    store.history(ref) -> list[dict]     # Docker's /images/{name}/history items
    store.prune(dangling_only=True, in_use=set()) -> (deleted: list[dict], reclaimed: int)
    store.prepare_rootfs(key, image_id) -> list[Mount]   # overlay: lowerdirs of the image's
                                                         # layers, upper/work under active/<key>
    store.rootfs_upper(key) -> str       # the upper dir (diff, commit, export later)
    store.remove_rootfs(key)             # idempotent
    store.add_pulled(manifest, config, layer_files, ref=None) -> Image
                                         # registry client: verified layer files from store.tmp
                                         # become blobs + snapshots; image and tag in one commit
    store.commit(key, container_config=None, ref=None, changes=(), comment="", author="",
                 created_by="") -> Image   # docker commit: upper dir -> new layer, parent = image
    store.changes(key) -> list[dict]     # docker diff: [{"Path": "/tmp/x", "Kind": 0|1|2}]

Untrusted tar members are written only through ``dockyard.images.archive`` which resolves every
path with ``dockyard.safepath``: nothing from a tar is ever written outside its target directory.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mount:
    """A mount described as data; the caller applies it (containerd's snapshotter does the same)."""

    type: str  # "overlay", "bind"
    source: str
    options: tuple[str, ...] = ()


@dataclass
class Image:
    id: str  # "sha256:<64 hex>", the digest of the config blob
    config: dict  # the OCI/Docker image config JSON (architecture, os, config{Env,Cmd,...},
    #               rootfs{diff_ids}, history[], created, author, ...)
    repo_tags: list[str] = field(default_factory=list)  # "busybox:latest" (familiar form)
    repo_digests: list[str] = field(default_factory=list)  # "busybox@sha256:..."
    manifest_digest: str | None = None
    size: int = 0  # bytes of unpacked layers
    parent: str = ""  # "sha256:..." for images made by commit/build, else ""

    @property
    def created(self) -> str:
        return self.config.get("created", "")


def __getattr__(name):
    if name == "ImageStore":
        from dockyard.images.store import ImageStore

        return ImageStore
    raise AttributeError(name)
