"""The guardian of one test run (started by tests/src/reaper.rs, once per test binary).

Usage: reaper.py RUN_ID RUN_ROOT

It waits for its stdin to close (and closes its stdout when it is done). The test process holds the only writing end and never
writes, so the pipe closes exactly when that process ends, however it ends: a clean exit,
`std::process::exit`, a panic, Ctrl-C or SIGKILL. Then it stops every process that carries
`EVENTBUS_TEST_RUN=RUN_ID` in its environment (every server and fake the run started, and
whatever they started), together with their descendants (the fakes start their containers
with a scrubbed environment), and removes RUN_ROOT, where the run kept its temp dirs,
unless `EVENTBUS_TEST_KEEP` is set.
"""

import os
import shutil
import signal
import sys
import time

MARKER = "EVENTBUS_TEST_RUN"
GRACE_SECONDS = 5.0  # after SIGTERM, before SIGKILL: nats-server and the fakes stop in < 1 s


def stat(pid):
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), fields[19]


def carries(pid, tag):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return tag in f.read().split(b"\0")
    except OSError:
        return False


def marked(tag):
    """{(pid, start time)} of every live process carrying the tag, and of their descendants."""
    me = os.getpid()
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            s = stat(int(name))
            if s and s[0] != "Z":
                table[int(name)] = s
    found = {pid for pid in table if carries(pid, tag)}
    grew = True
    while grew:
        children = {pid for pid, s in table.items() if s[1] in found} - found
        found |= children
        grew = bool(children)
    return {(pid, table[pid][2]) for pid in found}


def alive(process):
    """Still running, and still the same process (not a reused pid, not a zombie)."""
    s = stat(process[0])
    return s is not None and s[0] != "Z" and s[2] == process[1]


def say(text):
    try:  # the test's stderr may be a pipe nobody reads any more
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def send(processes, sig):
    for pid, _ in processes:
        try:
            os.kill(pid, sig)
            os.kill(pid, signal.SIGCONT)  # a SIGSTOPped server (tests/faults.rs) must act on it
        except OSError:
            pass


def reap(tag):
    """SIGTERM, a bounded wait, then SIGKILL for whatever is left. Returns how many it stopped."""
    seen = set()
    deadline = time.monotonic() + GRACE_SECONDS
    while True:
        # Rescan each round: a process may start another while it stops.
        live = {p for p in seen if alive(p)} | marked(tag)
        new = live - seen
        seen |= new
        if not live:
            return len(seen)
        if time.monotonic() > deadline:
            send(live, signal.SIGKILL)
        else:
            send(new, signal.SIGTERM)
        if time.monotonic() > deadline + GRACE_SECONDS:
            say(f"reaper: could not stop {sorted(p for p, _ in live)}")
            return len(seen)
        time.sleep(0.05)


def main():
    run_id, root = sys.argv[1], sys.argv[2]
    # The guardian must outlive the test process to do its work: it ignores Ctrl-C and a
    # closing terminal, and leaves the test process's tree and session (its parent returns at
    # once), so that whatever stops a job's process group, session or descendants spares it.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if os.fork():
        os._exit(0)
    os.setsid()
    while sys.stdin.buffer.read(4096):
        pass
    reap(f"{MARKER}={run_id}".encode())
    if os.environ.get("EVENTBUS_TEST_KEEP"):
        say(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
