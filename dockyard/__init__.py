"""dockyard: containers on Linux namespaces, cgroups and overlayfs, driven through the Docker Engine API."""

__version__ = "0.1.0"
