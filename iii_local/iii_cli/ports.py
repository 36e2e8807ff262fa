"""Which process holds a TCP port: the one line `make run`, `make dev` and `iii-cli start` print
instead of a traceback about an address in use.

- A port counts as taken when binding it (with `SO_REUSEADDR`, as the servers do) fails, so a
  socket lingering in TIME_WAIT after a clean stop does not count.
- Linux: the listening sockets in `/proc/net/tcp` and `/proc/net/tcp6` (state `0A`) give the
  socket's inode; the process with a `/proc/PID/fd/*` link to `socket:[inode]` holds it, and
  `/proc/PID/cmdline` says what it is. Another user's process cannot be looked into without
  root: the line then says so and names `sudo ss -ltnp`.
- The message groups the ports by holder and ends with what to do: stop the holder (most often
  an earlier `make run` or `make dev` that was killed) or choose other ports.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iii_local.config import EngineConfig

LISTEN = "0A"
EXIT_PORTS_TAKEN = 3
"""The exit code of a launcher that found its ports taken."""


@dataclass(frozen=True)
class Port:
    """A port a launcher is about to bind: what it is for and the variable that moves it."""

    port: int
    what: str
    variable: str
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Holder:
    """The process listening on a port; `pid` None when it could not be found (another user's)."""

    pid: int | None
    command: str


def engine_ports(config: EngineConfig) -> list[Port]:
    """The ports the engine binds before it can serve: its REST port (when configured), its worker port."""
    ports = [Port(config.rest.port, "engine REST", "III_REST_PORT", config.rest.host)] if config.rest else []
    return [*ports, Port(config.port, "engine worker port", "III_WORKER_PORT", config.host)]


def is_free(port: Port) -> bool:
    """True when `port.host:port.port` can be bound now."""
    family = socket.AF_INET6 if ":" in port.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((port.host, port.port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """The inodes of the sockets listening on `port` (any address, IPv4 or IPv6)."""
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def command_line(pid: int, proc: Path = Path("/proc")) -> str:
    """The process's command line on one line, shortened to 120 characters ("?" when it is gone)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    text = " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split())
    return text if len(text) <= 120 else text[:117] + "..."


def holder(port: int, proc: Path = Path("/proc")) -> Holder:
    """The process listening on `port`, found through /proc (see the module docstring)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    if wanted:
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fds = list((entry / "fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) in wanted:
                        return Holder(int(entry.name), command_line(int(entry.name), proc))
                except OSError:
                    continue
    return Holder(None, f"a process this user cannot see (sudo ss -ltnp 'sport = :{port}')")


def taken(ports: Iterable[Port]) -> list[tuple[Port, Holder]]:
    """The ports of `ports` that cannot be bound, each with its holder."""
    return [(p, holder(p.port)) for p in ports if not is_free(p)]


def taken_message(found: list[tuple[Port, Holder]], *, who: str = "an earlier `make run` or `make dev`") -> str:
    """ONE line: which ports are taken, by which process, and what to do."""
    groups: dict[Holder, list[Port]] = {}
    for port, held_by in found:
        groups.setdefault(held_by, []).append(port)
    parts = []
    for held_by, ports in groups.items():
        names = ", ".join(f"{p.port} ({p.what})" for p in ports)
        by = f"pid {held_by.pid} ({held_by.command})" if held_by.pid is not None else held_by.command
        parts.append(f"{names} held by {by}")
    pids = " ".join(str(h.pid) for h in groups if h.pid is not None)
    variables = "/".join(dict.fromkeys(p.variable for p, _ in found))
    kill = f"`kill {pids}`, " if pids else ""
    return f"error: port in use: {'; '.join(parts)}; stop it ({kill}often {who} still running) or choose other ports ({variables})"
