"""The floor of the keystroke benchmark: keys typed into `tmux attach` in a local pty, no
browser and no taskwire in between. Prints one latency (ms) per key, as JSON.
Usage: floor.py <tmux socket> <session> <keys>"""
import json
import os
import pty
import select
import sys
import time

socket, session, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm-256color"
    os.environ.pop("TMUX", None)
    os.execvp("tmux", ["tmux", "-L", socket, "attach-session", "-t", session])


def drain(until=None, timeout=5.0):
    """Reads what the client draws; with `until`, until those bytes appear."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05 if until is None else deadline - time.monotonic())
        if not ready:
            if until is None:
                return seen
            continue
        seen += os.read(fd, 65536)
        if until is not None and until in seen:
            return seen
    raise SystemExit(f"timed out waiting for {until!r}")


drain(timeout=1.0)
times = []
for i in range(count):
    key = b"abcdefghijklmnopqrstuvwxyz"[i % 26 : i % 26 + 1]
    start = time.perf_counter()
    os.write(fd, key)
    drain(until=key)
    times.append((time.perf_counter() - start) * 1000)
    if i % 50 == 49:
        os.write(fd, b"\r")
        drain()
print(json.dumps(times))
os.kill(pid, 9)
