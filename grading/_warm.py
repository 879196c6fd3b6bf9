"""A lane's warm kernel server: Python, ipykernel, NumPy, PyTorch and convlib imported once, a kernel forked per run.

Starting a grading kernel costs about 1.4 s of processor time, most of it importing PyTorch (the course's
checks compare with it); every notebook runs twice, so a student cost two of them. This server pays that
once per lane: `grading.sandbox` starts it inside the lane's bubblewrap sandbox (as root there, with the
capabilities to make namespaces and to change user), and for each kernel the launcher asks for, it forks:

- a supervisor, which makes new mount, PID, network, IPC and UTS namespaces and forks the namespaces' first
  process; it kills that process (and so everything in the namespaces) as soon as the launcher goes away,
  and tells the launcher the kernel's exit status when it ends by itself;
- the first process (PID 1 of the new namespaces, running no learner code): a fresh /proc, fresh in-memory
  /tmp, /dev/shm and working folder, a loopback of its own; it forks the kernel and reaps what is left;
- the kernel: the lane's user, the limits, no new privileges, the launcher's standard streams, the kernel's
  environment, then ipykernel.

So each kernel starts as isolated as a kernel started by bubblewrap alone: nothing written by one run (files,
processes, sockets, shared memory) reaches another, and the kernel's user can neither signal nor read the
server, which runs as root in a PID namespace the kernel cannot see. This file runs as `python -c` inside
the sandbox, where only the standard library and the course's environment are importable: it imports
nothing of `grading`.

    python -c SOURCE SOCKET UID LIMITS_JSON WORKING_FOLDER STASH OLD
"""

import ctypes
import json
import os
import re
import select
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x20000000, \
    0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 0x20, 0x1000, 0x4000, 0x40000
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
WORK = sys.argv[4] if len(sys.argv) > 4 else "/home/learner"  # the kernel's working folder (in memory, its own)
# the lane's connection folders, bound here too: each kernel's own is bound back into its fresh /tmp from here
STASH = sys.argv[5] if len(sys.argv) > 5 else "/run/grading-warm"
MNT_DETACH = 2
OLD = sys.argv[6] if len(sys.argv) > 6 else "/run/grading-old"  # where a folder's old mounts are while it is renewed
TMP_BYTES = 512 * 2**20
# what every grading kernel imports: the course's libraries, and what ipykernel imports as it starts
PRELOAD = ("numpy", "torch", "torch.nn.functional", "convlib", "convlib.checks", "ipykernel.kernelapp",
           "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger", "IPython.core.interactiveshell")

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, kind: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(source and source.encode(), target.encode(), kind and kind.encode(), ctypes.c_ulong(flags),
                      data and data.encode()), f"mount {target}")


def _loopback_up() -> None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _kernel(uid: int, limits: dict, request: dict, fds: list[int]) -> None:
    """The kernel process: never returns."""
    import resource

    try:
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for name, value in limits.items():
            resource.setrlimit(getattr(resource, name), (value, value))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        os.chdir(WORK)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["grading-kernel", *request["argv"]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except BaseException as error:  # noqa: BLE001 - the kernel's last words go to the launcher's stderr
        print(f"grading warm kernel: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


def _mounts() -> list[tuple[str, bool]]:
    """(mount point, read-only) of every mount this process sees, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])  # \040 is a space
            found.append((point, "ro" in fields[5].split(",")))
    return found


def _fresh(target: str, skip: str) -> None:
    """An empty in-memory `target`, keeping what the sandbox bound below it (the course's environment can live under
    /tmp, as in a fresh clone there), read-only where it was, but nothing at or below `skip`."""
    below = sorted((point, readonly) for point, readonly in _mounts()
                   if point.startswith(target + "/") and not (point == skip or point.startswith(skip + "/")))
    if below:
        _mount(target, OLD, None, MS_BIND | MS_REC)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_BYTES},mode=1777")
    for point, readonly in below:  # sorted: a folder before what is bound below it
        inside = os.path.relpath(point, target)
        os.makedirs(point, mode=0o755, exist_ok=True)
        _mount(os.path.join(OLD, inside), point, None, MS_BIND)
        if readonly:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if below:
        _check(libc.umount2(OLD.encode(), MNT_DETACH), f"umount {OLD}")


def _first_process(uid: int, limits: dict, request: dict, fds: list[int]) -> None:
    """PID 1 of the kernel's namespaces: fresh mounts, then the kernel; exits with the kernel's status."""
    try:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        folder = os.path.dirname(request["connection_file"])
        lane = os.path.dirname(folder)  # the lane's connection folders: the kernel gets its own, below
        for target in ("/tmp", "/dev/shm", WORK):
            if os.path.isdir(target):
                _fresh(target, skip=lane)
        # the kernel's connection folder (it was under the /tmp just replaced), and nothing else of the lane's
        os.makedirs(folder, mode=0o755)
        _mount(os.path.join(STASH, os.path.basename(folder)), folder, None, MS_BIND)
        _check(libc.umount2(STASH.encode(), MNT_DETACH), f"umount {STASH}")
        _loopback_up()
    except OSError as error:
        print(f"grading warm kernel: {error}", file=os.fdopen(os.dup(fds[2]), "w"), flush=True)
        os._exit(1)
    kernel = os.fork()
    if kernel == 0:
        _kernel(uid, limits, request, fds)
    for fd in fds:
        os.close(fd)
    while True:  # reap everything; when the kernel ends, so does this namespace and all left in it
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == kernel:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _serve(connection: socket.socket, uid: int, limits: dict) -> None:
    """The supervisor of one kernel: never returns."""
    try:
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        request = json.loads(message)
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        first = os.fork()
        if first == 0:
            connection.close()
            _first_process(uid, limits, request, fds)
        for fd in fds:
            os.close(fd)
        connection.sendall(f"started {first}\n".encode())
        watched = os.pidfd_open(first)
        ready, _, _ = select.select([connection.fileno(), watched], [], [])
        if connection.fileno() in ready:  # the launcher is gone (killed, or the kernel shut down): so is the kernel
            os.kill(first, signal.SIGKILL)
        _, status = os.waitpid(first, 0)
        _tell(connection, f"exit {os.waitstatus_to_exitcode(status)}")
    except BaseException as error:  # noqa: BLE001
        _tell(connection, f"error {type(error).__name__}: {error}")
    os._exit(0)


def _tell(connection: socket.socket, line: str) -> None:
    """Send the launcher one line, if it is still there to read it."""
    try:
        connection.sendall(line.encode() + b"\n")
    except OSError:
        pass


def main() -> None:
    path, uid, limits = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the system
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    os.chmod(path + ".new", 0o600)  # the grader (root) only: a kernel must never ask for another
    listener.listen(16)
    os.rename(path + ".new", path)  # ready: the launchers find the socket only now
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _serve(connection, uid, limits)
        connection.close()


if __name__ == "__main__":
    main()
