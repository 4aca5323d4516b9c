"""cli: the ``dockyard`` command, a thin client of the Docker Engine API over the daemon's socket.

It never imports the engine, images or runtime packages: whatever it does, the real ``docker``
CLI can do against the same socket, with the same requests. Entry point: ``dockyard.cli.entry:main``
(exec and stats parsed by hand, everything else through ``cli.main``'s click groups).

    entry.py       the entry point: `exec`/`stats` command lines parsed without click
    hot.py         exec, stats, detach keys: click-free, shared by entry.py and the click commands
    errors.py      CLIError, exceptions -> exit codes, the process's exit
    launcher.py    the site-less `dockyard` script setup.sh installs
    main.py        the click groups (a command's module is imported when it runs), aliases
                   (container/image/volume ...), errors -> exit codes
    client.py      HTTP/1.1 over the unix socket (stdlib sockets: startup time matters)
    stream.py      frame demultiplexing, attach sessions, raw tty, resize, signal forwarding
    opts.py        run/create flags -> the create request (pure)
    format.py      go-units, Go's tabwriter, the Go-template subset, inspect re-indenting (pure)
    containers.py, images.py, volumes.py, system.py   the commands
"""
