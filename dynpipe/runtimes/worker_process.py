"""One local worker process, seen from the orchestrator: start it, watch it, kill its group.

A worker is ``python -m dynpipe.runtimes.worker`` (a subprocess, not multiprocessing's
spawn or forkserver: those re-run the user's main script in every worker unless it has an
``if __name__ == "__main__"`` guard). It starts in its own session, so its process group
holds everything the step starts (``subprocess.Popen``, ``os.system``) and one
``killpg`` stops all of it; Ctrl-C at a terminal reaches the orchestrator only, which
decides what to stop.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .local_launch import LocalLaunch


def describe_exit(returncode: int | None, memory_limit: str | None = None, ready: bool = True) -> str:
    """Why a worker died, in words.

    Only a step that was running may have run out of memory, so only then (and only for
    SIGKILL, or under a memory limit) is that named as a possible cause; a worker that
    died before it was ready says so instead.
    """
    if returncode is None:
        return "worker process stopped answering" + ("" if ready else " before it was ready")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        what = f"worker process killed by {name}"
    else:
        what = f"worker process exited with code {returncode}"
    if not ready:
        return what + " before it was ready"
    if memory_limit:
        return what + (
            f" (the step ran under a memory limit of {memory_limit}: running out of it can end a process this way)"
        )
    if returncode == -signal.SIGKILL:
        return what + " (out of memory? the kernel's OOM killer sends SIGKILL)"
    return what


def package_parent() -> str | None:
    """The folder holding the dynpipe package, unless it is a site directory already."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.basename(here) in ("site-packages", "dist-packages"):
        return None
    return here


class FrameReader:
    """Reads a worker's messages (``multiprocessing.connection`` framing: a 4-byte big-endian
    length, or -1 and an 8-byte length for messages over 2 GiB) in chunks.

    ``Connection.recv_bytes`` reads the header and the body with a syscall each; here one
    read takes every frame that has arrived (a result often comes with log lines). In the
    orchestrator each blocking read also hands the GIL back and waits for it again, so
    fewer reads mean fewer thread switches per step.
    """

    CHUNK = 1 << 16
    MAX_READ = 1 << 24  # os.read allocates what it is asked for

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self._need = 4  # bytes the next frame needs in the buffer (at least its header)

    def read(self) -> list[bytes]:
        """The complete frames after one read (blocks until data comes); EOFError at the end."""
        want = min(max(self.CHUNK, self._need - len(self._buf)), self.MAX_READ)
        chunk = os.read(self.fd, want)
        if not chunk:
            raise EOFError
        buf = self._buf
        buf += chunk
        frames: list[bytes] = []
        while len(buf) >= 4:
            (size,) = struct.unpack_from("!i", buf)
            start = 4
            if size == -1:
                if len(buf) < 12:
                    break
                (size,) = struct.unpack_from("!Q", buf, 4)
                start = 12
            end = start + size
            self._need = end
            if len(buf) < end:
                break
            frames.append(bytes(buf[start:end]))
            del buf[:end]
            self._need = 4
        return frames


class WorkerProcess:
    """One worker process, the orchestrator's end of its socket, and the attempt it runs."""

    __slots__ = ("proc", "conn", "slot", "launch", "ready", "pidfd", "killed")

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection, slot: int) -> None:
        self.proc = proc
        self.conn = conn
        self.slot = slot
        self.launch: LocalLaunch | None = None
        self.ready = False
        self.killed = False
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
            except OSError:
                self.pidfd = None

    @classmethod
    def start(cls, python: str, env: dict[str, str], slot: int) -> WorkerProcess:
        """Start a worker in its own session (so its group holds whatever the step starts)."""
        parent_sock, child_sock = socket.socketpair()
        try:
            child_fd = child_sock.fileno()
            env = dict(env)
            env.setdefault("PYTHONUNBUFFERED", "1")
            home = package_parent()
            if home is not None:  # dynpipe imported from a source tree via sys.path
                env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
            proc = subprocess.Popen(
                [
                    python, "-m", "dynpipe.runtimes.worker",
                    "--fd", str(child_fd), "--parent", str(os.getpid()), "--slot", str(slot),
                ],
                pass_fds=(child_fd,),
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=os.getcwd(),
                start_new_session=True,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        return cls(proc, Connection(parent_sock.detach()), slot)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the worker and whatever the step started in its process group."""
        self.killed = True
        self.kill_group()
        try:
            os.kill(self.proc.pid, signal.SIGKILL)  # in case it left its group
        except (ProcessLookupError, PermissionError):
            pass

    def kill_group(self) -> None:
        """SIGKILL the worker's process group: children a step left behind die with it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self, timeout: float = 5.0) -> int | None:
        """Wait for the worker's exit (killing it if it lingers); its return code, if known."""
        self.kill_group()
        try:
            returncode: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = None
        for close in (self.conn.close, self._close_pidfd):
            try:
                close()
            except OSError:
                pass
        return returncode

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
