"""runtime: turns an OCI runtime-spec bundle into a running, monitored process.

Knows nothing about images, names, Docker or the daemon. Two halves:

* ``dockyard-runtime`` (``dockyard/runtime/oci.py``): an OCI runtime CLI in the shape of runc/crun
  (``create --bundle B --pid-file P [--console-socket S] ID``, ``start``, ``state``, ``kill``,
  ``delete [--force]``, ``exec``), with ``--root DIR`` for its state. It sets up namespaces,
  the mount tree, pivot_root, /proc /dev /sys, masked paths, capabilities, no_new_privs, seccomp,
  rlimits, user/groups and the cgroup (through ``dockyard.runtime.cgroups``) from config.json.
  Because it speaks the OCI CLI, conmon can drive it, and crun/runc can stand in for it in tests.
* ``Runtime`` (this module's interface, implemented in ``monitor.py``): what the engine calls. It
  starts one conmon per container (Debian's ``conmon``: a small C monitor, ~0.5 MB PSS, which keeps
  the container's stdio, writes the log, records the exit code and survives the daemon), and
  answers questions about containers it started, also after the daemon restarted.

Contract the engine relies on (all paths absolute, all methods synchronous and thread-safe; they
never fork a Python child: conmon and the runtime are exec'd):

    rt = Runtime(state_root="<exec-root>/runtime")          # one per daemon
    c = rt.create(cid, bundle, terminal=False, stdin=False,
                  log_path=".../ctr.log", log_size_max=None)  # -> Created(pid, monitor_pid)
        # returns once the container's init exists, blocked before exec of the user process;
        # the output pipes are already being read by conmon. On failure raises errdefs.* with
        # the runtime's one-line message (e.g. 'exec: "foo": executable file not found in $PATH',
        # or 'permission denied') and leaves nothing behind (no cgroup, no state dir, no conmon).
    rt.start(cid)                      # the user process execs now
    rt.kill(cid, signal.SIGTERM, all_processes=False)
    rt.exit_status(cid) -> ExitStatus|None   # None while running; after exit: code (128+sig if
                                             # killed by a signal), oom_killed, finished_at (ns)
    rt.monitor_pid(cid) -> int|None    # conmon's PID while it lives (engine pidfd-watches it)
    rt.attach_socket(cid) -> str       # conmon's SOCK_SEQPACKET attach socket
    rt.resize(cid, height, width)      # through conmon's ctl fifo
    rt.reopen_log(cid)                 # conmon reopens log_path (for rotation by rename)
    rt.delete(cid, force=False)        # removes runtime state, cgroup, conmon dirs
    rt.list() -> list[str]             # cids that have state (for reconcile after restart)
    rt.cgroup(cid) -> cgroups.Cgroup   # stats / freezer later
    rt.pause(cid) / rt.resume(cid)     # freeze / thaw all its processes (Conflict if not running/paused)
    rt.exec(cid, eid, process, terminal=False, stdin=False, attach=True) -> (pid, monitor_pid, sock|None)
        # one more process in the running container through its own conmon (--exec); with attach,
        # ``sock`` is its attach socket, connected before the process execs
    rt.exec_exit_code(cid, eid) -> int|None ; rt.exec_resize(cid, eid, h, w) ; rt.exec_remove(cid, eid)

Log file format is conmon's k8s-file: '<RFC3339Nano> <stdout|stderr> <P|F> <bytes>\\n' per chunk
(P = partial line, F = full line). ``dockyard.runtime.logfile`` parses it.
"""

def __getattr__(name):
    # Lazy: importing dockyard.runtime must stay cheap (the OCI CLI imports its own submodules).
    if name in ("Created", "ExitStatus"):
        from dockyard.runtime import types

        return getattr(types, name)
    if name == "Runtime":
        from dockyard.runtime.monitor import Runtime

        return Runtime
    raise AttributeError(name)
