"""Plain types the runtime hands to the engine (kept out of ``dockyard.runtime`` so that the OCI
CLI, which imports the package on every container start, does not pay for ``dataclasses``)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Created:
    pid: int  # host PID of the container's init
    monitor_pid: int  # conmon's PID


@dataclass(frozen=True)
class ExitStatus:
    code: int  # the process's exit code; 128+N when killed by signal N
    oom_killed: bool
    finished_at_ns: int  # wall clock, nanoseconds since the epoch
