"""Restart policies: Docker's decision and back-off, as a pure function the engine calls at exit.

Docker's rules (moby ``restartmanager``): ``no`` never; ``always`` always; ``unless-stopped``
unless the user stopped it; ``on-failure[:N]`` on a non-zero exit, at most N times (0 = no limit).
A stop or kill by the user cancels any restart. The delay starts at 100 ms and doubles with each
restart up to one minute; a run that lasted 10 s or more resets it. On daemon start, ``always``
containers are started again, ``unless-stopped`` ones only if the user had not stopped them.
"""

import calendar
import time

FIRST_DELAY = 0.1  # seconds
MAX_DELAY = 60.0
RESET_AFTER = 10.0  # a run this long resets the back-off


def decide(policy: dict, exit_code: int, manually_stopped: bool, ran_s: float, restart_count: int,
           prev_delay: float) -> tuple[bool, float]:
    """(restart?, delay in seconds) for a container that just exited; ``prev_delay`` is the last
    delay used (0 when none), the returned one is what to remember for the next exit."""
    name = (policy or {}).get("Name") or "no"
    if name == "no" or manually_stopped:
        return False, prev_delay
    if ran_s >= RESET_AFTER:
        prev_delay = 0.0
    delay = FIRST_DELAY if prev_delay <= 0 else min(prev_delay * 2, MAX_DELAY)
    if name == "on-failure":
        limit = int((policy or {}).get("MaximumRetryCount") or 0)
        restart = exit_code != 0 and (limit == 0 or restart_count < limit)
    else:
        restart = name in ("always", "unless-stopped")
    return restart, delay


def start_on_boot(policy: dict, manually_stopped: bool) -> bool:
    """Whether a stopped container is started when the daemon starts."""
    name = (policy or {}).get("Name") or "no"
    return name == "always" or (name == "unless-stopped" and not manually_stopped)


def parse_rfc3339(s: str) -> float:
    """Unix seconds of our RFC3339Nano UTC timestamps (0 for Go's zero time or junk)."""
    try:
        base, _, frac = s.rstrip("Z").partition(".")
        t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
        return max(0.0, t + (float("0." + frac) if frac else 0.0))
    except (ValueError, OverflowError):
        return 0.0
