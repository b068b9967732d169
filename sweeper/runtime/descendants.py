"""Finding every process a local run started, even those that left its session.

A step's shell runs in a session of its own, so one ``killpg`` ends what stays in it. A
step can leave it: ``setsid``, ``subprocess.Popen(..., start_new_session=True)``, a daemon
that forks twice. Two things bring those back:

- while a run goes on, the process that runs the step is a *child subreaper*
  (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux): a descendant whose parent exits is adopted by
  it instead of by init, so it stays in this process's tree where it can be found;
- the run's environment carries a token (:data:`TOKEN_VARIABLE`) that every descendant
  inherits, which tells one run's processes from another's, and from this process's other
  children (``sweep run`` runs in the CLI process, a sweep's trials in long-lived Ray
  actors, one after the other).

A process belongs to the run when it is below this process and is in the run's session or
in a session a process of the run created, carries the run's token, or descends from one
that does. Only those are signalled. Adopted processes of the run are reaped here, so the
long-lived process collects no zombies. A process that leaves the session *and* clears its
environment is still found while an ancestor of the run lives, not after.

What the run's processes used is counted as they are reaped (:meth:`RunProcesses.reaped`):
``wait4`` reports a process's CPU time and peak RSS together with those of every process it
waited for, so the shell and the adopted orphans together cover the whole tree. The peak
is the largest single process's, not the sum of processes that ran at once.
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import threading
from collections import defaultdict
from dataclasses import dataclass

#: The variable that marks every process of one run.
TOKEN_VARIABLE = "SWEEPER_RUN_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36
_runs_lock = threading.Lock()
#: The runs going on in this process, and the shells (session leaders) of those started.
_runs = 0
_running: set[int] = set()
#: Processes seen older than a run's shell, by pid: (inode of their /proc entry, start
#: time). Such a process is never one of that run's, nor between this process and one of
#: them (every ancestor of a run's process below this one is the shell or of the run), so
#: a later scan skips it unread while its entry is the same: a pid given to a new process
#: comes with a new /proc entry, with a new inode.
_older: dict[int, tuple[int, int]] = {}


def _set_subreaper(on: bool) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: a process that leaves the session is found while its parent lives


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    session: int
    zombie: bool
    start: int  # clock ticks after boot: tells a process from a later one with its pid


def _read_process(pid: int) -> _Process | None:
    # os.open/os.read: a scan reads every process's stat, Python's file objects cost double.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text[text.rfind(b")") + 2 :].split()
    try:
        return _Process(pid, int(fields[1]), int(fields[3]), fields[0] == b"Z", int(fields[19]))
    except (IndexError, ValueError):
        return None


def _snapshot(floor: int, started: int) -> dict[int, _Process]:
    """The processes whose pid is ``floor`` or more (all of them when pids wrapped since),
    less those known to have started before ``started`` (see :data:`_older`)."""
    global _older
    try:
        with open("/proc/sys/kernel/ns_last_pid", "rb") as handle:
            if int(handle.read()) < floor:
                floor = 0  # pids wrapped around: a newer process may have a lower pid
    except (OSError, ValueError):
        floor = 0
    known = _older
    older = {pid: entry for pid, entry in known.items() if pid < floor}
    processes = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) < floor:
                continue
            pid, inode = int(entry.name), entry.inode()
            seen = known.get(pid)
            if seen is not None and seen[0] == inode and seen[1] < started:
                older[pid] = seen
                continue
            process = _read_process(pid)
            if process is None:
                continue
            processes[pid] = process
            if process.start < started:
                older[pid] = (inode, process.start)
    with _runs_lock:
        _older = older  # the processes gone since are forgotten
    return processes


def _environment_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return entry in handle.read().split(b"\0")
    except OSError:
        return False


class RunProcesses:
    """The processes of one local run: find them, signal them, reap the adopted ones.

    Create it before starting the run's shell (this process is a subreaper from then on,
    until the last run of this process is closed, so orphans of unrelated children are not
    adopted outside runs), start the shell in a new session with :meth:`environment`
    added, then :meth:`attach` it. The shell is the caller's child and the caller waits for
    it, so it is never reaped here. Call :meth:`close` when the run is over.
    """

    def __init__(self) -> None:
        global _runs
        self.token = secrets.token_hex(12)
        self.leader = 0
        # Processes found so far (pid -> start time) and the sessions they are in: a
        # zombie's environment cannot be read any more, so these tell an adopted zombie
        # of the run (a daemon's first fork, say) from anything else.
        self._known: dict[int, int] = {}
        self._sessions: set[int] = set()
        self._started: int | None = None  # the shell's start time, read by the first scan
        self._entry = f"{TOKEN_VARIABLE}={self.token}".encode()
        self._cpu_s = 0.0
        self._peak_kb = 0
        # A peak at or below this may be the starter's (see reaped): not the run's own.
        self._unknown_below_kb = 0
        with _runs_lock:
            _runs += 1
            if _runs == 1:
                _set_subreaper(True)

    def environment(self) -> dict[str, str]:
        """The variable to add to the shell's environment."""
        return {TOKEN_VARIABLE: self.token}

    def attach(self, leader: int) -> None:
        """The run's shell has started as ``leader``, in a session of its own."""
        self.leader = leader
        self._sessions.add(leader)
        # The shell's start time is read later, by the first scan: reading its /proc entry
        # now, while it is being exec'd, waits for the exec.
        with _runs_lock:
            _running.add(leader)

    def close(self) -> None:
        """The run is over; the last one of this process stops adopting orphans."""
        global _runs
        with _runs_lock:
            _running.discard(self.leader)
            _runs -= 1
            if _runs == 0:
                _set_subreaper(False)

    def alive(self) -> list[int]:
        """The run's living processes other than its shell; reaps its adopted zombies."""
        me = os.getpid()
        # Every process of the run was started after its shell, so (pids growing until they
        # wrap) only pids from the shell's up need reading: a few, not all of /proc.
        if self._started is None:
            # The shell is not reaped before the run is over, so it is there (a zombie, maybe).
            shell = _read_process(self.leader)
            self._started = shell.start if shell is not None else 0
        processes = _snapshot(self.leader, self._started)
        children: dict[int, list[int]] = defaultdict(list)
        for process in processes.values():
            children[process.ppid].append(process.pid)
        zombies: list[_Process] = []
        living: list[int] = []
        pending = [(pid, False) for pid in children[me]]
        while pending:
            pid, inherited = pending.pop()
            found = processes.get(pid)
            if found is None:
                continue
            member = inherited or self._belongs(found)
            if member:
                self._known[pid] = found.start
                self._sessions.add(found.session)
                if not found.zombie and pid != self.leader:
                    living.append(pid)
            if found.zombie and found.ppid == me and pid != self.leader:
                zombies.append(found)
            pending.extend((child, member) for child in children[pid])
        for zombie in zombies:
            if self._adopted(zombie):
                try:
                    pid, _, usage = os.wait4(zombie.pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if pid:
                    self.reaped(usage)
        return living

    def reaped(self, usage: resource.struct_rusage, *, started_here: bool = False) -> None:
        """Count a reaped process of the run (with what it waited for) from its ``wait4``.

        ``started_here``: the process was started by this process (the shell). The kernel
        carries the high-water mark of the memory a process replaces when it execs into
        its own, so the shell's peak is at least this process's at the time: a peak that
        is not above this process's own cannot be told from it.
        """
        self._cpu_s += usage.ru_utime + usage.ru_stime
        if started_here:
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if usage.ru_maxrss <= own:
                self._unknown_below_kb = max(self._unknown_below_kb, own)
                return
        self._peak_kb = max(self._peak_kb, usage.ru_maxrss)

    def usage(self) -> tuple[float, float | None]:
        """CPU seconds (user + system) and peak RSS (MiB, None where unknown) of the
        processes of the run reaped so far."""
        peak = self._peak_kb / 1024 if self._peak_kb > self._unknown_below_kb else None
        return self._cpu_s, peak

    def signal(self, sig: int) -> list[int]:
        """Send ``sig`` to every living process of the run but its shell; those it was sent to."""
        living = self.alive()
        for pid in living:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return living

    def _belongs(self, process: _Process) -> bool:
        if process.session in self._sessions:
            return True
        if self._known.get(process.pid) == process.start:
            return True
        return not process.zombie and _environment_has(process.pid, self._entry)

    def _adopted(self, zombie: _Process) -> bool:
        """Whether a zombie child of this process is one of the run's, to reap here."""
        if zombie.session in self._sessions or self._known.get(zombie.pid) == zombie.start:
            return True
        # A process of the run that left the session alone and ended before anyone looked
        # (a fire-and-forget ``Popen(start_new_session=True)``): a session leader born
        # during the run, not the shell of another run of this process. This process
        # starts no such child of its own while a run goes on.
        with _runs_lock:
            other_run = zombie.pid in _running
        started = self._started or 0
        return zombie.session == zombie.pid and zombie.start >= started and not other_run
