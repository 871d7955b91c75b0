"""Runs untrusted Python (a program and its unit tests) in a sandboxed subprocess, never in this process.

Why: generated code is data (DESIGN.md, "Safety"); it runs only in a child interpreter with time, memory,
process and file limits and no network, and whatever it does, the pipeline goes on.

Process tree of one run
    parent (this module) -> bootstrap (`python -I -S`, root if we are) -> init -> worker (the user code).
    The bootstrap applies the namespaces, init reaps (pid 1 of a new pid namespace when available: when it
    exits the kernel kills everything left inside), the worker drops privileges, sets the rlimits, installs
    the audit hook and runs the program, the tests and `check(entry_point)`.

Layers, each reported in `SandboxResult.isolation` when it was actually applied
    netns       `unshare(CLONE_NEWNET)`: a network namespace with only a down loopback, so no connection
                anywhere, 127.0.0.1 included.
    mountns     a private mount namespace: fresh tmpfs on /tmp, /var/tmp and /dev/shm (writes there vanish with
                the run), read-only empty tmpfs over `hide_paths` (/root, /home, /work: secrets and project
                data) with the interpreter's prefix bound back in read-only, and the work dir itself a tmpfs
                of `tmpfs_mb` (no write can fill the host's disk).
    pidns       a new pid namespace (+ `procfs`: a fresh /proc that shows only the sandbox's processes).
    uid=N       when we are root, the worker runs as a fresh unprivileged uid (random per run), so
                RLIMIT_NPROC really limits it (root ignores RLIMIT_NPROC) and root-owned files are read-only.
    no_new_privs  `prctl(PR_SET_NO_NEW_PRIVS)`: no setuid binary can give privileges back.
    rlimits     RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CORE=0.
    audit_hook  `sys.addaudithook` installed before the user code: socket creation, writes outside the work dir,
                links, spawning programs and ctypes end the run with status "denied". It is the reporting layer
                and the fallback when namespaces are unavailable, not a security boundary by itself (e.g.
                `os.open(..., dir_fd=...)` escapes its path check; the uid and the mount namespace still hold).
                Forced on whenever the code would run as root.
    nofork      only when root could not drop its uid: forking is denied (RLIMIT_NPROC would not hold).
    The parent runs the bootstrap in a new session; on wall-clock time-out or output over the cap it kills the
    whole process group (which takes the pid namespace with it) and, without a pid namespace, every process of
    the sandbox uid. The work dir (cwd, HOME, TMPDIR) is removed afterwards; the environment is scrubbed.

Fallbacks
    Not root, or `unshare` refused: no namespaces, no uid change; rlimits + audit hook (RLIMIT_NPROC then counts
    all processes of the calling user). Root without a mount namespace drops its uid only if the interpreter's
    prefix is world-readable (else the stdlib would be unreadable) and otherwise denies fork. If mounts fail
    where namespaces exist, the run is retried without them and later runs skip them.
    All setup happens in the child interpreter itself, not in a `preexec_fn`: `preexec_fn` may deadlock in a
    threaded parent such as a Beam worker.

Known gaps
    World-readable files outside `hide_paths` can be read. `-I` ignores PYTHONHASHSEED, so set iteration order
    of strings differs between runs (a test that depends on it can flip).

Result honesty
    "passed" needs a line written after `check` returned, carrying a per-run nonce the user code is never given,
    so `os._exit(0)` or `sys.exit(0)` before the tests finish is a failure. The nonce still lives in the child's
    memory: a program that goes looking for it can forge a pass, which is why the hook denies ctypes.
"""

from __future__ import annotations

import inspect
import marshal
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, fields

__all__ = ["SandboxLimits", "SandboxResult", "run_program", "run_tests", "STATUSES"]

STATUSES = (
    "passed",  # exit 0 after check() returned
    "failed",  # an exception (AssertionError, wrong types, ...) or an exit before the tests finished
    "syntax_error",  # the program does not compile
    "timeout",  # wall-clock or CPU limit
    "memory",  # MemoryError under RLIMIT_AS
    "denied",  # the audit hook stopped a forbidden operation (network, write outside the dir, spawn, ctypes)
    "output_limit",  # stdout or stderr over the cap
    "killed",  # ended by a signal we did not send (e.g. SIGSEGV, SIGKILL at the hard CPU limit)
    "error",  # the sandbox itself could not run the code (bad tests, setup failure)
)

_DENIED_EXIT = 86
_SETUP_EXIT = 70
_MAX_SOURCE_BYTES = 4_000_000
_REPORT_CAP = 65_536
_MOUNT_FAILURE = "sandbox setup failed: mount namespace"
_MOUNTS_WORK = [True]  # process-wide memo, flipped once if mounting fails on this machine


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run; defaults fit HumanEval-sized tests on a small shared machine."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512
    file_mb: int = 4
    nproc: int = 8
    nofile: int = 64
    output_bytes: int = 64_000  # per stream
    tmpfs_mb: int = 16
    namespaces: bool = True  # try netns, mountns, pidns
    drop_uid: bool = True  # when root, run the code as a fresh unprivileged uid
    audit_hook: bool = True  # off only in tests of the OS layers underneath; forced on while the code runs as root
    hide_paths: tuple[str, ...] = ("/root", "/home", "/work")
    uid_base: int = 1_500_000_000
    uid_span: int = 1_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"SandboxLimits.{f.name} must be positive, got {value}")


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run did.

    `error_line` is the 1-based program line where an exception surfaced (the deepest traceback frame in the
    program) or where the parser stopped; `error_lines` are all program lines of the traceback, outermost first.
    """

    passed: bool
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    reason: str = ""
    isolation: tuple[str, ...] = ()
    error_type: str = ""
    error_line: int | None = None
    error_lines: tuple[int, ...] = ()


def run_tests(program: str, tests: str, entry_point: str | None, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `program`, then `tests`, then `check(entry_point)` (HumanEval style) in the sandbox."""
    limits = limits or SandboxLimits()
    if len(program.encode()) + len(tests.encode()) > _MAX_SOURCE_BYTES:
        return SandboxResult(False, "error", None, "", "", 0.0, reason="program and tests exceed the size cap")
    if entry_point is not None and not entry_point.isidentifier():
        return SandboxResult(False, "error", None, "", "", 0.0, reason=f"entry point {entry_point!r} is no name")
    result = _run(program, tests, entry_point, limits, _MOUNTS_WORK[0])
    if result.status == "error" and result.reason.startswith(_MOUNT_FAILURE):
        _MOUNTS_WORK[0] = False  # namespaces exist but mounts fail here: stop trying, run without them
        result = _run(program, tests, entry_point, limits, False)
    return result


def run_program(program: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run a bare program (no tests) in the sandbox; it passes if it runs to the end."""
    return run_tests(program, "", None, limits)


# ----------------------------------------------------------------------------------------------- the parent side


def _run(program: str, tests: str, entry_point: str | None, limits: SandboxLimits, mounts: bool) -> SandboxResult:
    nonce = secrets.token_hex(16)
    is_root = os.geteuid() == 0
    uid = limits.uid_base + secrets.randbelow(limits.uid_span) if (is_root and limits.drop_uid) else None
    root_dir = tempfile.mkdtemp(prefix="stepforge-sbx-")
    work = os.path.join(root_dir, "work")
    os.mkdir(work, 0o700)
    if uid is not None:
        os.chmod(root_dir, 0o711)  # the sandbox uid may traverse, not list
        os.chown(work, uid, uid)
    report_r, report_w = os.pipe()
    policy = {
        "report_fd": report_w,
        "work": work,
        "uid": uid,
        "namespaces": limits.namespaces,
        "mounts": mounts,
        "audit_hook": limits.audit_hook,
        "tmpfs": [p for p in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(p)],
        "tmpfs_size": f"size={limits.tmpfs_mb}m,mode=1777",
        "hide": [p for p in limits.hide_paths if os.path.isdir(p)],
        "keep": sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}),
        "rlimits": {
            "CPU": (limits.cpu_s, limits.cpu_s + 1),
            "AS": (limits.memory_mb << 20,) * 2,
            "FSIZE": (limits.file_mb << 20,) * 2,
            "NPROC": (limits.nproc,) * 2,
            "NOFILE": (limits.nofile,) * 2,
            "CORE": (0, 0),
        },
    }
    payload = marshal.dumps((nonce, program, tests, entry_point, policy))
    env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [_interpreter(), "-I", "-S", "-c", _CHILD_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=work,
            env=env,
            pass_fds=(report_w,),
            start_new_session=True,  # its own process group, killed as a whole
        )
    except OSError as error:
        os.close(report_r)
        os.close(report_w)
        shutil.rmtree(root_dir, ignore_errors=True)
        return SandboxResult(False, "error", None, "", "", 0.0, reason=f"could not start the sandbox: {error}")
    os.close(report_w)
    try:
        killed_for, streams = _collect(proc, payload, report_r, started + limits.wall_s, limits.output_bytes)
    finally:
        os.close(report_r)
        _kill_all(proc, uid)
        shutil.rmtree(root_dir, ignore_errors=True)
    wall_s = time.monotonic() - started
    return _classify(nonce, proc.returncode, killed_for, streams, wall_s, limits)


def _interpreter() -> str:
    """The real interpreter binary: a venv's symlink may sit under a path the mount namespace hides."""
    return os.path.realpath(sys.executable)


def _collect(
    proc: subprocess.Popen[bytes], payload: bytes, report_r: int, deadline: float, cap: int
) -> tuple[str, dict[str, bytearray]]:
    """Feed the payload, read stdout/stderr/report with caps until exit, time-out or overflow."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(payload)  # the bootstrap reads it all before any user code runs
        proc.stdin.close()
    except OSError:
        pass  # it died early; the report and stderr say why
    streams = {"stdout": bytearray(), "stderr": bytearray(), "report": bytearray()}
    caps = {"stdout": cap, "stderr": cap, "report": _REPORT_CAP}
    selector = selectors.DefaultSelector()
    for name, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()), ("report", report_r)):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, name)
    killed_for = ""
    exited_at: float | None = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                killed_for = "timeout"
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # the bootstrap is gone; whatever still holds the pipes is killed below
            for key, _ in selector.select(timeout=min(0.05, max(0.0, deadline - now))):
                name = key.data
                try:
                    chunk = os.read(key.fd, 65_536)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                room = caps[name] + 1 - len(streams[name])
                streams[name] += chunk[: max(0, room)]
                if len(streams[name]) > caps[name] and name != "report":
                    killed_for = "output"
            if killed_for:
                break
    finally:
        selector.close()
    return killed_for, streams


def _kill_all(proc: subprocess.Popen[bytes], uid: int | None) -> None:
    """Kill the run's process group, then make sure no process of its uid outlives the call."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is the group id
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    if uid is None:
        return
    # A pid namespace empties itself once init is dead; without one, setsid escapees are swept by uid.
    if not _wait_for_no_processes(uid, 0.2):
        _sweep_uid(uid)
        if not _wait_for_no_processes(uid, 2.0):
            _sweep_uid(uid)


def _wait_for_no_processes(uid: int, timeout_s: float) -> bool:
    """Poll /proc until no live process of `uid` is left or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while _uid_has_processes(uid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _sweep_uid(uid: int) -> None:
    """kill(-1) as the sandbox uid: one atomic kill of every process it owns (setsid escapees included)."""
    # Started as root and dropped inside: the interpreter's prefix may not be readable by the sandbox uid.
    script = f"import os, signal; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); os.kill(-1, signal.SIGKILL)"
    subprocess.run(
        [_interpreter(), "-I", "-S", "-c", script],
        env={},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )


def _uid_has_processes(uid: int) -> bool:
    """Whether a live (non-zombie) process has uid `uid` (one pass over /proc; most runs leave none)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # cannot tell: sweep anyway
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            return True
    return False


def _parse_report(raw: bytes, nonce: str) -> list[list[str]]:
    """Lines of tab-separated, backslash-escaped fields; only lines carrying the run's nonce count."""
    lines = []
    for line in bytes(raw).split(b"\n"):
        parts = [part.decode("unicode_escape", "replace") for part in line.split(b"\t")]
        if len(parts) >= 2 and parts[1] == nonce:
            lines.append([parts[0], *parts[2:]])
    return lines


def _classify(
    nonce: str,
    returncode: int | None,
    killed_for: str,
    streams: dict[str, bytearray],
    wall_s: float,
    limits: SandboxLimits,
) -> SandboxResult:
    """Turn what came back into one status, a reason and the line-level evidence."""
    stdout = bytes(streams["stdout"][: limits.output_bytes]).decode("utf-8", "replace")
    stderr = bytes(streams["stderr"][: limits.output_bytes]).decode("utf-8", "replace")
    report = _parse_report(streams["report"], nonce)
    isolation: tuple[str, ...] = ()
    outcome: list[str] | None = None
    denied: list[str] | None = None
    setup_error = ""
    exit_info: list[str] | None = None
    for kind, *rest in report:
        if kind == "isolation" and not isolation:
            isolation = tuple(x for x in rest[0].split(",") if x) if rest else ()
        elif kind == "outcome" and outcome is None:
            outcome = rest
        elif kind == "denied" and denied is None:
            denied = rest
        elif kind == "setup_error":
            setup_error = rest[0] if rest else "unknown"
        elif kind == "exit" and exit_info is None:
            exit_info = rest

    def result(status: str, reason: str, error_type: str = "", lines: tuple[int, ...] = ()) -> SandboxResult:
        return SandboxResult(
            status == "passed",
            status,
            returncode,
            stdout,
            stderr,
            round(wall_s, 4),
            reason,
            isolation,
            error_type,
            lines[-1] if lines else None,
            lines,
        )

    if killed_for == "output":
        return result("output_limit", f"output over {limits.output_bytes} bytes; process group killed")
    if denied is not None:
        event, target = (denied + ["", ""])[:2]
        return result("denied", f"audit hook denied {event} {target}".strip(), "denied")
    if killed_for == "timeout":
        return result("timeout", f"wall-clock limit {limits.wall_s:g} s; process group killed")
    if setup_error:
        return result("error", f"sandbox setup failed: {setup_error}")
    if not isolation:
        return result("error", f"the sandbox did not start (exit {returncode}): {stderr[-300:]}")
    if outcome is not None:
        kind, error_type, line, message = (outcome + ["", "", "", ""])[:4]
        lines = tuple(int(x) for x in line.split(",") if x.isdigit() and int(x) > 0)
        if kind == "passed" and exit_info is not None and exit_info[:2] == ["0", "0"]:
            return result("passed", "all tests passed")
        if kind == "memory":
            return result("memory", f"MemoryError under the {limits.memory_mb} MiB address-space limit", error_type)
        if kind == "syntax_error":
            return result("syntax_error", f"{error_type}: {message}", error_type, lines)
        if kind == "test_error":
            return result("error", f"the tests do not run: {error_type}: {message}", error_type)
        if kind == "exception":
            where = f" at program line {lines[-1]}" if lines else ""
            return result("failed", f"{error_type}{where}: {message}", error_type, lines)
    if exit_info is not None and exit_info[1] not in ("", "0"):
        signum = int(exit_info[1])
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        if signum == signal.SIGXCPU:
            return result("timeout", f"CPU limit {limits.cpu_s} s (SIGXCPU)")
        if signum == signal.SIGKILL:
            return result("killed", "SIGKILL (hard CPU limit or the kernel)")
        return result("killed", f"killed by {name}")
    code = exit_info[0] if exit_info else str(returncode)
    return result("failed", f"exited (code {code}) before the tests finished")


# ------------------------------------------------------------------------------------------------ the child side


def _sandbox_child() -> None:  # pragma: no cover - runs only inside the sandbox interpreter (`python -I -S -c`)
    """Bootstrap, init and worker of one run. Self-contained, stdlib only: its source is shipped as `-c`."""
    import marshal
    import os
    import resource
    import sys

    # The `exec` of the user code below must never run in a pipeline process: only as the `-c` program of an
    # isolated (`-I`) interpreter that `_run` started.
    if __name__ != "__main__" or not sys.flags.isolated:
        raise RuntimeError("_sandbox_child runs only as the program of a sandboxed interpreter")

    nonce, program, tests, entry_point, policy = marshal.loads(sys.stdin.buffer.read())
    null_fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null_fd, 0)  # the user code reads nothing
    os.close(null_fd)
    report_fd = policy["report_fd"]
    work = policy["work"]
    applied = []

    def report(kind, *fields):
        line = b"\t".join(str(x).encode("unicode_escape") for x in (kind, nonce, *fields))
        try:
            os.write(report_fd, line + b"\n")
        except OSError:
            pass

    libc = None
    if policy["namespaces"]:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        except Exception:
            libc = None

    def unshare(flag):
        return libc is not None and libc.unshare(flag) == 0

    def mount(source, target, fstype, flags, data=None):
        enc = [None if x is None else os.fsencode(x) for x in (source, target, fstype, data)]
        if libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}")

    # mount(2) flags from <sys/mount.h>
    ms_rdonly, ms_nosuid, ms_nodev, ms_noexec, ms_remount = 1, 2, 4, 8, 32
    ms_bind, ms_rec, ms_private = 4096, 16384, 1 << 18
    if unshare(0x40000000):  # CLONE_NEWNET
        applied.append("netns")
    if policy["mounts"] and unshare(0x00020000):  # CLONE_NEWNS
        try:
            mount(None, "/", None, ms_rec | ms_private)  # nothing below propagates back to the host
            keep = [p for p in policy["keep"] if os.path.isdir(p)]
            keep_fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
            covered = []
            for path in policy["tmpfs"]:
                mount("tmpfs", path, "tmpfs", ms_nosuid | ms_nodev, policy["tmpfs_size"])
                covered.append(path)
            for path in policy["hide"]:
                mount("tmpfs", path, "tmpfs", ms_nosuid | ms_nodev | ms_noexec, "size=1m,mode=755")
                covered.append(path)
            for path, fd in keep_fds.items():
                if any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
                    os.makedirs(path, mode=0o755, exist_ok=True)
                    mount(f"/proc/self/fd/{fd}", path, None, ms_bind | ms_rec)
                    mount(None, path, None, ms_remount | ms_bind | ms_rdonly | ms_nosuid | ms_nodev)
                os.close(fd)
            # The work dir becomes a size-capped tmpfs of its own: writes there cannot fill the host's disk.
            os.makedirs(work, mode=0o755, exist_ok=True)
            owner = "" if policy["uid"] is None else f",uid={policy['uid']},gid={policy['uid']}"
            mount("tmpfs", work, "tmpfs", ms_nosuid | ms_nodev, f"{policy['tmpfs_size']}{owner}".replace("1777", "700"))
            for path in policy["hide"]:
                mount(None, path, None, ms_remount | ms_rdonly | ms_nosuid | ms_nodev | ms_noexec)
            os.chdir(work)
            applied.append("mountns")
        except OSError as error:
            report("setup_error", f"mount namespace: {error}")
            os._exit(70)
    pidns = unshare(0x20000000)  # CLONE_NEWPID: our next child is pid 1 of a new namespace
    try:
        init_pid = os.fork()
    except OSError as error:
        report("setup_error", f"fork init: {error}")
        os._exit(70)
    if init_pid:
        _, status = os.waitpid(init_pid, 0)  # the bootstrap only relays init's end
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)

    # ---- init
    if pidns:
        applied.append("pidns")
        if "mountns" in applied:
            try:
                mount("proc", "/proc", "proc", ms_nosuid | ms_nodev | ms_noexec)
                applied.append("procfs")
            except OSError:
                pass

    def world_traversable(path):
        parts = os.path.abspath(path).split("/")
        for i in range(1, len(parts) + 1):
            try:
                if not os.stat("/".join(parts[:i]) or "/").st_mode & 0o001:
                    return False
            except OSError:
                return False
        return True

    uid = policy["uid"]
    if uid is not None and "mountns" not in applied and not all(world_traversable(p) for p in policy["keep"]):
        uid = None  # the stdlib would be unreadable to the dropped uid: stay root, deny fork instead
    try:
        worker_pid = os.fork()
    except OSError as error:
        report("setup_error", f"fork worker: {error}")
        os._exit(70)
    if worker_pid:
        code = sig = 0
        while True:  # reap everything (orphans come to pid 1) until the worker ends
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == worker_pid:
                code = os.waitstatus_to_exitcode(status)
                sig, code = (-code, 0) if code < 0 else (0, code)
                break
        report("exit", code, sig)
        if uid is not None and not pidns and os.fork() == 0:  # without a pid namespace: sweep the uid
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, 9)
            os._exit(0)
        os._exit(code if not sig else 128 + sig)  # with a pid namespace the kernel now kills the rest

    # ---- worker
    try:
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            applied.append(f"uid={uid}")
        if libc is not None and libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS
            applied.append("no_new_privs")
        for name, (soft, hard) in policy["rlimits"].items():
            resource.setrlimit(getattr(resource, "RLIMIT_" + name), (soft, hard))
        applied.append("rlimits")
    except Exception as error:
        report("setup_error", f"worker: {error!r}")
        os._exit(70)
    sys.dont_write_bytecode = True  # the import system must not try to write .pyc files outside the dir
    main_pid = os.getpid()
    deny_fork = os.getuid() == 0

    def finish(code):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

    if policy["audit_hook"] or os.getuid() == 0:  # still root: the hook is the only guard left, never off
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
        path_events = {
            "open",
            "os.remove",
            "os.rmdir",
            "os.mkdir",
            "os.rename",
            "os.truncate",
            "os.chmod",
            "os.chown",
            "os.utime",
            "os.mkfifo",
            "os.mknod",
            "shutil.rmtree",
        }
        spawn_events = {
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "subprocess.Popen",
            "os.startfile",
            "os.symlink",
            "os.link",
            "os.chroot",
            "os.fchmod",
            "os.fchown",
        }
        if deny_fork:
            spawn_events |= {"os.fork", "os.forkpty"}
        work_prefix = work.rstrip("/") + "/"
        abspath = os.path.abspath
        fsdecode = os.fsdecode

        def outside(path):
            if isinstance(path, int) or path is None:
                return False
            full = abspath(fsdecode(path))
            return not (full == work or full.startswith(work_prefix) or full == "/dev/null")

        def deny(event, target):
            report("denied", event, str(target)[:300])
            try:
                os.write(2, f"stepforge sandbox: denied {event} {str(target)[:300]}\n".encode())
            except OSError:
                pass
            os._exit(86)

        def hook(event, args):
            if event in path_events:
                if event == "open":
                    path, _mode, flags = args
                    if flags & write_flags and outside(path):
                        deny(event, path)
                elif any(outside(a) for a in args[:2] if isinstance(a, str | bytes | os.PathLike)):
                    deny(event, args[0])
            elif event in spawn_events or event.startswith(("socket.", "ctypes.")):
                deny(event, args[0] if args else "")

        sys.addaudithook(hook)
        applied.append("audit_hook")
        if deny_fork:
            applied.append("nofork")
    report("isolation", ",".join(applied))

    namespace = {"__name__": "__main__", "__builtins__": __builtins__}

    def program_lines(tb):
        lines = []
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<program>":
                lines.append(str(tb.tb_lineno))
            tb = tb.tb_next
        return ",".join(lines)

    try:
        program_code = compile(program, "<program>", "exec")
    except (SyntaxError, ValueError) as error:
        report("outcome", "syntax_error", type(error).__name__, getattr(error, "lineno", 0) or 0, str(error)[:500])
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        finish(1)
    try:
        test_code = compile(tests, "<tests>", "exec")
        check_code = compile(f"check({entry_point})", "<check>", "exec") if entry_point else None
    except (SyntaxError, ValueError) as error:
        report("outcome", "test_error", type(error).__name__, 0, str(error)[:500])
        finish(1)
    try:
        # Only ever runs inside the sandboxed child interpreter (this function's source is its `-c` program).
        exec(program_code, namespace)
        exec(test_code, namespace)
        if check_code is not None:
            exec(check_code, namespace)
    except MemoryError:
        if os.getpid() == main_pid:
            report("outcome", "memory", "MemoryError", 0, "")
        finish(1)
    except BaseException as error:  # SystemExit included: exiting early is not passing
        if os.getpid() == main_pid:
            report("outcome", "exception", type(error).__name__, program_lines(error.__traceback__), str(error)[:500])
            try:
                sys.__excepthook__(type(error), error, error.__traceback__)
            except Exception:
                pass
        finish(1)
    if os.getpid() == main_pid:
        report("outcome", "passed", "", 0, "")
    finish(0)


_CHILD_SOURCE = textwrap.dedent(inspect.getsource(_sandbox_child)) + "\n_sandbox_child()\n"
