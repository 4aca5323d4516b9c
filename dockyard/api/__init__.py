"""api: the Docker Engine API (1.44) over a Unix socket, in front of the engine.

    router = build_router(engine)             # every endpoint, wired to one engine object
    server = Server(router); await server.start_unix(path)
    dockyard.api.daemon.run(data_root, exec_root, host)   # the daemon process (`dockyard daemon`)

Handlers translate wire parameters into engine calls and render engine objects as Docker JSON
(``render``); errdefs kinds become HTTP status codes in ``server`` only. Nothing here touches the
image store or the runtime except through ``engine`` (and ``engine.images``).
"""


def build_router(eng):
    from dockyard.api import build, containers, images, networks, system, volumes
    from dockyard.api.server import Router

    router = Router()
    for area in (build, networks, system, containers, images, volumes):
        area.setup(router, eng)
    return router
