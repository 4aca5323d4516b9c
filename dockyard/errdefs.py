"""The closed set of error kinds used inside dockyard.

Subsystems raise these (chaining the cause with ``raise ... from e``); only the API edge maps them to
HTTP status codes, and only the CLI maps them to exit codes. Messages are one line, say what is wrong
and, where it helps, what to do.
"""


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""


class NotFound(DockyardError):
    """The named object does not exist (HTTP 404)."""


class AlreadyExists(DockyardError):
    """An object with that name or ID already exists (HTTP 409)."""


class Conflict(DockyardError):
    """The operation conflicts with the object's current state, e.g. removing a running container (409)."""


class InvalidArgument(DockyardError):
    """The request itself is malformed or names something impossible (HTTP 400)."""


class NotModified(DockyardError):
    """Nothing to do: already started, already stopped (HTTP 304)."""


class FailedPrecondition(DockyardError):
    """The system is not in a state that allows the operation (HTTP 412/409)."""


class Unavailable(DockyardError):
    """A dependency (daemon, kernel feature, monitor binary) is not available (HTTP 503)."""


class Forbidden(DockyardError):
    """The operation is never allowed, e.g. removing a predefined network (HTTP 403)."""


class NotImplemented(DockyardError):  # noqa: A001 - moby's errdefs name; builtins' is a constant
    """The operation exists but this configuration cannot do it, e.g. reading a none driver's logs (501)."""


class Internal(DockyardError):
    """A bug or an unexpected system failure (HTTP 500)."""
