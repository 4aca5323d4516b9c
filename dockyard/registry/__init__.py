"""registry: an OCI Distribution registry server and the client that pulls and pushes images.

Server (``dockyard.registry.server``; ``main(argv)`` is ``dockyard registry serve``)::

    main(["--addr", "127.0.0.1:5000", "--root", DIR, "--htpasswd", FILE, "--token-auth",
          "--tls-cert", CERT, "--tls-key", KEY])

speaks the ``/v2/`` API of the OCI Distribution Spec (and what Docker's clients expect of it) over
``storage.RegistryStorage``: content-addressed blobs shared by all repositories, per-repository links,
uploads, tags and referrers. ``python -m dockyard.registry.server gc --root DIR`` collects blobs.

Client (``dockyard.registry.client``; synchronous, call it from a worker thread)::

    pull(ref, store, platform=None, progress=None, auth=None, insecure=()) -> Image
    push(ref, store, progress=None, auth=None, insecure=()) -> str   # the pushed manifest digest

``ref`` is any reference ``dockyard.images.reference`` parses (Docker Hub defaults); ``store`` an
``ImageStore``; ``auth`` Docker's X-Registry-Auth dict ({"username", "password"} or
{"identitytoken"}), else credentials come from Docker's config.json. ``progress(dict)`` gets Docker
JSON-message dicts ({"status", "id", "progressDetail": {"current", "total"}}; push ends with one
carrying "aux": {"Tag", "Digest", "Size"}). Plain HTTP is used only for loopback registries and those
named in ``insecure`` (host[:port]). Pull imports through ``ImageStore.add_pulled``. Errors are ``errdefs``:
NotFound (no such repository/tag/platform), Forbidden (credentials refused), InvalidArgument (a bad
reference, or content from the registry that fails verification), Unavailable (cannot connect).
A pull that fails leaves nothing in the store.
"""
