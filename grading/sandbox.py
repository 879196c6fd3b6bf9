"""The grading kernel, isolated: bubblewrap namespaces, an unprivileged user, limits, a cleared environment.

Learner code runs in the kernel, so the kernel is the thing to contain. nbclient starts it
through `SandboxedKernelManager`, whose kernel spec (written by `grading.run`) runs

    python -m grading.sandbox --memory-mb M --mode bwrap|none -f CONNECTION_FILE

This launcher runs outside the sandbox, as the grader's user. With `--mode bwrap` it hands
the connection folder to the lane's unprivileged user (root graders only), becomes that
user, and replaces itself with `bwrap`, which starts the kernel with:

* its own mount namespace holding only the system's programs and libraries (/usr and the
  like), the Python installation and the course's environment and `convlib`, all
  read-only; a private /tmp; a working folder of its own in memory (the kernel's current
  folder); and the connection folder, where the kernel's IPC sockets live. Nothing else
  of the grader's file system: no source notebook, gradebook, OUT, other submission or
  home folder;
* its own network namespace (a loopback of its own and nothing else: the kernel talks to
  the grader over Unix sockets in the connection folder, jupyter_client's ipc transport),
  PID, IPC, UTS and cgroup namespaces, no new user namespaces inside;
* an environment cleared and rebuilt from a short list (`environment`);
* limits set inside, before the kernel starts (`BOOTSTRAP`): address space (memory),
  processes (a fork bomb stops at PROCESSES), file size and no core files.

With `--mode none` (`python -m grading autograde ... --no-sandbox`) the launcher starts
the same kernel with the same limits and nothing else.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import cache
from pathlib import Path

PROCESSES = 256  # processes and threads of the sandbox's user; the kernel itself uses about a dozen
FILE_MB = 256  # the largest file learner code may write
TMP_MB = 512  # the private /tmp and the working folder, each (in memory, counted in the memory of the machine)
# Every grading lane runs its kernels as a user of its own (a root grader only): processes of one lane never
# count against another's limit (a root grader's sandbox has no user namespace, so a user's processes are
# counted machine-wide), and no lane can signal or read another's. Each run draws its own block of
# LANES_PER_RUN uids at random (`run_uids`), so that two runs on one machine do not share users either. The
# numbers are far above the uids of real accounts and of the usual subordinate-uid ranges.
LANE_UID_BASE = 1_900_000_000
LANES_PER_RUN = 1024
# The course library is bound alone, at a path of its own that comes first on the kernel's PYTHONPATH: the
# kernel imports exactly the convlib the grader found (the repository's own when the grader runs from one,
# else the installed one), and never sees the folder around it (solutions/ sits beside convlib/).
LIBRARY = "/opt/course"
PARENT_VARIABLE = "GRADING_PROCESS"  # the pid of the grading process (grading._one) that starts the kernels
UID_VARIABLE = "GRADING_SANDBOX_UID"  # set by grading._one for its lane: the uid the lane's kernels run as
# The only variables of the grader's that reach the kernel: they choose numeric kernels (how a machine
# computes, never what it may read), so that grading can be run as another processor would.
PASSED_THROUGH = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE",
                  "NPY_DISABLE_CPU_FEATURES")
# System folders the Python installation needs, bound read-only where they exist (links are recreated as links)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/localtime",
          "/sys/devices/system/cpu")

# Runs first in the kernel's process: the user (root graders: the lane's, for good, and no way back through
# a set-user-id program), the limits (a learner cannot raise a hard limit), then ipykernel.
BOOTSTRAP = """\
import ctypes, os, resource, sys
uid = {uid!r}
if uid is not None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    raise SystemExit("grading.sandbox: prctl(PR_SET_NO_NEW_PRIVS) failed")
limits = {limits!r}
for name, value in limits.items():
    resource.setrlimit(getattr(resource, name), (value, value))
if sys.argv[1:] == ["--probe"]:
    import ipykernel
    print("ok", os.getuid())
    raise SystemExit
sys.argv = ["grading-kernel"] + sys.argv[1:]
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""


def limits(memory_mb: int) -> dict[str, int]:
    return {"RLIMIT_AS": memory_mb * 2**20, "RLIMIT_NPROC": PROCESSES, "RLIMIT_FSIZE": FILE_MB * 2**20,
            "RLIMIT_CORE": 0}


def environment(source: dict[str, str]) -> dict[str, str]:
    """The kernel's whole environment: what Python, the libraries and IPython need, and the PASSED_THROUGH variables."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": "/tmp", "USER": "learner", "LOGNAME": "learner", "LANG": "C.UTF-8",
        "TMPDIR": "/tmp", "IPYTHONDIR": "/tmp/.ipython", "MPLCONFIGDIR": "/tmp/.matplotlib", "MPLBACKEND": "Agg",
        "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        "PYTHONPATH": LIBRARY,
        # one BLAS/OpenMP thread per kernel: lanes already use the cores
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
        "VECLIB_MAXIMUM_THREADS": "1",
    }
    env.update({name: source[name] for name in PASSED_THROUGH if name in source})
    return env


def convlib_folder() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("convlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def read_only_paths() -> list[str]:
    """What the kernel may read where it is: the Python installation and the environment."""
    paths = [sys.base_prefix, sys.prefix, os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]
    python = os.path.realpath(sys.executable)
    if not any(python.startswith(p.rstrip("/") + "/") for p in paths):
        paths.append(os.path.dirname(python))
    return sorted(set(paths))


def _top_link(path: str) -> bool:
    return os.path.islink(path) and path.count("/") == 1  # /bin -> usr/bin on a merged-/usr system


def bwrap_command(cwd: str, connection_folder: str, env: dict[str, str], as_root: bool,
                  capabilities: tuple[str, ...] = ("CAP_SETUID", "CAP_SETGID")) -> list[str]:
    """The bubblewrap command line that runs a program in a fresh in-memory `cwd`, seeing only what it needs.

    As root, bwrap makes the namespaces itself and the program starts as root inside them, with only the
    capabilities to change its user (the BOOTSTRAP drops them for good before any learner code runs):
    a user namespace would map the sandbox's user to root outside, and process limits do not bind root.
    Any other user gets a user namespace of its own, where no new one can be made.
    """
    bwrap = shutil.which("bwrap") or "bwrap"
    args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--clearenv"]
    # no --new-session: the kernel stays in the grading child's process group, so that the grader's hard limit
    # (a signal to the group) reaches it; it has no terminal to push keystrokes into
    if as_root:
        for capability in capabilities:
            args += ["--cap-add", capability]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_MB * 2**20), "--tmpfs", "/tmp"]
    binds = [("--ro-bind", path) for path in SYSTEM if os.path.exists(path) and not _top_link(path)]
    binds += [("--ro-bind", path) for path in read_only_paths() if not path.startswith("/usr/")]
    binds += [("--bind", connection_folder)]
    convlib = convlib_folder()
    made = {"/", "/tmp"}
    for path in [path for _, path in binds] + [cwd, f"{LIBRARY}/convlib"]:
        # the folders above each bound path: bwrap would make them 0700, and the kernel's user must pass through
        for parent in reversed(Path(path).parents):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
    for path in SYSTEM:
        if _top_link(path):
            args += ["--symlink", os.readlink(path), path]
    for option, path in binds:
        args += [option, path, path]
    if convlib:
        args += ["--ro-bind", convlib, f"{LIBRARY}/convlib"]
    args += ["--perms", "1777", "--size", str(TMP_MB * 2**20), "--tmpfs", cwd, "--chdir", cwd]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


def kernel_command(memory_mb: int, uid: int | None) -> list[str]:
    return [sys.executable, "-c", BOOTSTRAP.format(limits=limits(memory_mb), uid=uid)]


def command(cwd: str, connection_file: str, memory_mb: int, sandbox: bool, source_env: dict[str, str]
            ) -> tuple[list[str], dict[str, str] | None]:
    """(argv, environment or None for bwrap's own) that start the kernel for `connection_file`.

    A root grader gives the connection folder to the lane's user first: the kernel makes its sockets there.
    """
    env = environment(source_env)
    if not sandbox:
        return kernel_command(memory_mb, None), {**source_env, **env, "HOME": source_env.get("HOME", "/tmp"),
                                                 "PYTHONPATH": source_env.get("PYTHONPATH", "")}
    folder = os.path.dirname(connection_file)
    uid = None
    if os.getuid() == 0:
        uid = int(source_env.get(UID_VARIABLE, LANE_UID_BASE))
        for path in (folder, connection_file):
            os.chown(path, uid, uid)
    return bwrap_command(cwd, folder, env, as_root=uid is not None) + kernel_command(memory_mb, uid), None


def die_with_parent(parent: int | None = None) -> bool:
    """Be killed (SIGKILL) when this process's parent ends, through exec too (PR_SET_PDEATHSIG). False if the
    parent is gone already: `parent` (or the parent at the call) is no longer this process's parent."""
    import ctypes

    parent = os.getppid() if parent is None else parent
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def kill_group(pid: int) -> None:
    """SIGKILL to the process group that `pid` leads (a grading child's session, a warm server's), if it is left."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m grading.sandbox")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--mode", choices=("bwrap", "none"), required=True)
    parser.add_argument("-f", dest="connection_file", required=True)
    options, kernel_arguments = parser.parse_known_args(argv)  # the rest is ipykernel's (nbclient adds some)
    # this launcher, and the kernel it stands for, end with the grading process that started it: a kernel
    # started after that process is gone (its worker lost, its hard limit hit) would wait for a client forever
    parent = os.environ.get(PARENT_VARIABLE)
    if not die_with_parent(int(parent) if parent else None):
        sys.exit("grading.sandbox: the grading process that asked for this kernel is gone")
    connection_file = os.path.realpath(options.connection_file)
    warm = os.environ.get(WARM_SOCKET)
    if options.mode == "bwrap" and warm and os.getuid() == 0:
        code = warm_kernel(warm, connection_file, kernel_arguments, dict(os.environ))
        if code is not None:
            sys.exit(code)
        # no warm server answered (it could not start, or died): a kernel started by bubblewrap alone
    argv, env = command(os.getcwd(), connection_file, options.memory_mb, options.mode == "bwrap", dict(os.environ))
    argv += ["-f", connection_file, *kernel_arguments]
    if env is None:
        os.execv(argv[0], argv)
    os.execve(argv[0], argv, env)


# --- warm kernels (grading._warm) ------------------------------------------------------------------------

WARM_SOCKET = "GRADING_WARM_SOCKET"  # set by grading.run for a lane's grading child: its lane's warm server
WARM_FOLDER = "/home/learner"  # the working folder of a kernel forked by a warm server (grading._warm.WORK)
WARM_STASH = "/run/grading-warm"  # the lane's connection folders, seen by the warm server (grading._warm.STASH)
WARM_OLD = "/run/grading-old"  # a folder's mounts while a kernel's namespaces renew it (grading._warm.OLD)


def warm_kernel(path: str, connection_file: str, kernel_arguments: list[str], source_env: dict[str, str]
                ) -> int | None:
    """Ask the lane's warm server (grading._warm) for a kernel; wait for it to end and return its exit status.

    None if no server answered before a kernel was started (the caller then starts one with bubblewrap). This
    launcher process stands for the kernel: when it is killed, the server kills the kernel.
    """
    uid = int(source_env.get(UID_VARIABLE, LANE_UID_BASE))
    folder = os.path.dirname(connection_file)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        for target in (folder, connection_file):
            os.chown(target, uid, uid)
        request = {"env": environment(source_env), "connection_file": connection_file,
                   "argv": ["-f", connection_file, *kernel_arguments]}
        socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
        reader = connection.makefile("r")
        started = reader.readline()
    except OSError:
        return None
    if not started.startswith("started"):
        if started.startswith("error"):
            print(f"grading.sandbox: the warm kernel server could not start a kernel: {started.strip()}",
                  file=sys.stderr)
        return None
    ended = reader.readline()  # until the kernel ends (or this process is killed, and the kernel with it)
    if ended.startswith("exit "):
        return int(ended.split()[1]) & 0xFF
    print(f"grading.sandbox: the warm kernel server ended the kernel: {ended.strip() or 'no status'}", file=sys.stderr)
    return 1


class WarmServer:
    """A lane's warm kernel server, running in the lane's sandbox as root (grading._warm); the grader's side."""

    def __init__(self, uid: int, memory_mb: int, source_env: dict[str, str], log: Path) -> None:
        import grading._warm as warm

        self.folder = Path(tempfile.mkdtemp(prefix="grading-warm-"))
        os.chmod(self.folder, 0o711)  # kernels reach their own connection folder in it, and list nothing
        self.socket = str(self.folder / "server.sock")
        argv = bwrap_command(WARM_FOLDER, str(self.folder), environment(source_env), as_root=True,
                             capabilities=("CAP_SETUID", "CAP_SETGID", "CAP_SYS_ADMIN"))
        argv += ["--perms", "0700", "--dir", WARM_STASH, "--bind", str(self.folder), WARM_STASH,
                 "--perms", "0700", "--dir", WARM_OLD]
        argv += [sys.executable, "-c", Path(warm.__file__).read_text(), self.socket, str(uid),
                 json.dumps(limits(memory_mb)), WARM_FOLDER, WARM_STASH, WARM_OLD]
        with log.open("ab") as output:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                            start_new_session=True)

    def ready(self, timeout: float = 60) -> bool:
        """Wait until the server listens (its imports done); False if it ended instead."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        kill_group(self.process.pid)
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


_WARM: dict[str, WarmServer] = {}
_COLD: set[str] = set()  # lanes whose warm server could not start
_WARM_LOCK = threading.Lock()


def warm_server(lane: Path, uid: int, memory_mb: int, source_env: dict[str, str]) -> str | None:
    """The socket of `lane`'s warm kernel server, started if it is not running; None where there is none (a grader
    that is not root: its kernels are started by bubblewrap alone)."""
    if os.getuid() != 0:
        return None
    key = str(lane)
    log = lane.parent / f"{lane.name}-warm-server.log"  # beside the lane, which is made again for a new kit
    with _WARM_LOCK:
        if key in _COLD:  # it failed once: not tried again in this run (each try could cost a minute)
            return None
        server = _WARM.get(key)
        if server is not None and not server.alive():  # it died (killed, out of memory): a new one
            server.stop()
            server = None
        if server is None:
            server = _WARM[key] = WarmServer(uid, memory_mb, source_env, log)
    if server.ready():
        return server.socket
    with _WARM_LOCK:
        _COLD.add(key)
    said = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    print(f"WARNING: the warm kernel server of {lane.name} did not start ({said[0][:200] if said else 'no message'}); "
          f"its kernels start cold, as isolated but slower", file=sys.stderr)
    server.stop()
    return None


def stop_warm_servers() -> None:
    with _WARM_LOCK:
        for server in _WARM.values():
            server.stop()
        _WARM.clear()


atexit.register(stop_warm_servers)


# --- the grader's side --------------------------------------------------------------------------------

SOCKETS = "GRADING_SOCKETS"  # the folder (short, in /tmp) where a grading process's kernels make their sockets


def sockets_folder(pid: int) -> Path:
    """The folder of the kernels' sockets of grading process `pid`: made by it, removed by it and by its parent."""
    return Path(tempfile.gettempdir()) / f"grading-sockets-{pid}"


def run_uids() -> int:
    """The first uid of a block of LANES_PER_RUN drawn for one grading run; lane k runs as that + k."""
    import secrets

    return LANE_UID_BASE + secrets.randbelow(2**20) * LANES_PER_RUN


def lane_uid(lane: int, first: int = LANE_UID_BASE) -> int:
    if not 0 <= lane < LANES_PER_RUN:
        raise ValueError(f"lane {lane}: at most {LANES_PER_RUN} lanes (--jobs) per run")
    return first + lane


@cache
def unavailable() -> str | None:
    """Why the sandbox cannot run on this machine (None when it can): bwrap missing, or namespaces refused."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return ("bubblewrap (the `bwrap` command) is not installed: on Debian or Ubuntu run "
                "`sudo apt-get install bubblewrap`")
    with tempfile.TemporaryDirectory(prefix="grading-probe-") as folder:
        connection = os.path.join(folder, "kernel.json")
        Path(connection).write_text("{}")
        os.mkdir(os.path.join(folder, "run"))
        env = {UID_VARIABLE: str(lane_uid(0))}
        argv, _ = command(os.path.join(folder, "run"), connection, 1024, True, env)
        try:
            probe = subprocess.run(argv + ["--probe"], capture_output=True, text=True, timeout=60, cwd="/")
        except (OSError, subprocess.SubprocessError) as error:
            return f"bubblewrap could not start: {error}"
    if probe.returncode != 0 or not probe.stdout.startswith("ok"):
        return (f"bubblewrap is installed but cannot create the sandbox here ({probe.stderr.strip()[-300:]}); "
                "in a container, allow user namespaces (see the README, 'Grading inside a container')")
    return None


def kernel_spec(memory_mb: int, sandbox: bool) -> dict:
    return {
        "argv": [sys.executable, "-m", "grading.sandbox", "--memory-mb", str(memory_mb),
                 "--mode", "bwrap" if sandbox else "none", "-f", "{connection_file}"],
        "display_name": "Python 3 (grading, sandboxed)" if sandbox else "Python 3 (grading, not sandboxed)",
        "language": "python",
        # a time limit interrupts the kernel with a message on its control channel, not a signal: SIGINT sent
        # from outside would stop bwrap itself (and with it the kernel), and never reach the kernel's code
        "interrupt_mode": "message",
    }


if __name__ == "__main__":
    main()

