"""Runs untrusted Python (a program and its unit tests) under OS isolation, never in this process.

Why: generated code is data; whatever it does, the host, its secrets and the truth of the verdict stay intact,
and the pipeline goes on. The threat model, what is left and how to check a host: docs/security.md.

Layers of one run (all of them, or the code does not run)
    bwrap       bubblewrap (Debian's `bubblewrap` package, installed by scripts/setup.sh and the container),
                started as a fresh unprivileged host uid per run when we are root, so RLIMIT_NPROC counts only
                that run's processes and no host file is writable by it.
    namespaces  new user (with further user namespaces disabled), mount, pid, network, ipc, uts and cgroup
                namespaces. The root is an empty read-only tmpfs holding only the interpreter, its libraries
                (read-only binds), a fresh /proc and a minimal /dev; /tmp and /dev/shm are private size-capped
                tmpfs. No /root, /home, /etc, /run, host /tmp or project files exist inside.
    seccomp     `annotators.verifiers.seccomp`: ptrace, other processes' memory, mount, unshare, setns, keyctl,
                bpf, io_uring, perf, modules, non-local sockets, TIOCSTI and the like fail with EPERM.
    privileges  uid 65534 inside, no capabilities, no_new_privs, a new session, killed with its parent.
    environment empty: nothing of the parent's (tokens, credentials) reaches the program.
    rlimits     CPU, address space, file size, processes, open files, no core files.
    verdict     `annotators.verifiers.harness`: the tests run in a judge process the program cannot reach, and
                only the judge's verdict channel counts (plain-data results, exit status checked).

Before any verdict is used, the judge reports what it sees of its own confinement (seccomp mode, no_new_privs,
capabilities, uid, environment) and the parent checks it against what it asked for; a mismatch is an error,
never a run with fewer layers. Where bwrap or a readable interpreter is missing, nothing runs:
`isolation_problem()` says why and `require_isolation()` raises `SandboxUnavailable` with that reason.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from annotators.verifiers import seccomp

__all__ = [
    "STATUSES",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "isolation_problem",
    "require_isolation",
    "run_program",
    "run_tests",
]

STATUSES = (
    "passed",  # the judge ran every test and check() returned
    "failed",  # an exception (AssertionError, wrong types, ...) or an exit before the tests finished
    "syntax_error",  # the program does not compile
    "timeout",  # wall-clock or CPU limit
    "memory",  # MemoryError under RLIMIT_AS
    "output_limit",  # stdout or stderr over the cap
    "killed",  # ended by a signal we did not send (e.g. SIGSEGV, SIGKILL at the hard CPU limit)
    "error",  # the sandbox could not run the code (unavailable, bad tests, setup failure)
)

_MAX_SOURCE_BYTES = 4_000_000
_VERDICT_CAP = 1 << 20
_SANDBOX_UID = 65534  # "nobody" inside the user namespace
# All the judge may find in its environment: bwrap's --chdir and the interpreter's locale coercion (PEP 538).
_ALLOWED_ENV = {"PWD": "/tmp", "LC_CTYPE": "C.UTF-8"}
_HARNESS_SOURCE = (Path(__file__).with_name("harness.py")).read_text()
# Processes of the run's uid before the program's own: bwrap and the judge (pid 1 inside).
_OWN_PROCESSES = 2


class SandboxUnavailable(RuntimeError):
    """The isolation the sandbox needs cannot be set up on this host; no code is run with less."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run; defaults fit HumanEval-sized tests on a small shared machine."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512
    file_mb: int = 4
    nproc: int = 8  # processes the program may have, itself included
    nofile: int = 64
    output_bytes: int = 64_000  # per stream
    tmpfs_mb: int = 16  # each of /tmp and /dev/shm
    uid_base: int = 1_500_000_000
    uid_span: int = 1_000_000
    bwrap: str = "bwrap"  # the bubblewrap binary (a name on PATH or a path)
    python: str = ""  # the interpreter inside; default: this one if others can read it, else the system's

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


def _error(reason: str) -> SandboxResult:
    return SandboxResult(False, "error", None, "", "", 0.0, reason=reason)


def run_tests(
    program: str, tests: str, entry_point: str | None, limits: SandboxLimits | None = None, *, context: str = ""
) -> SandboxResult:
    """Run `program`, then `tests`, then `check(entry_point)` (HumanEval style) in the sandbox.

    `context` is trusted source that comes with the problem (its prompt): the judge runs it before the tests, and
    the names it defines are what the tests see under those names, whatever the program redefines.
    """
    limits = limits or SandboxLimits()
    if len(tests.encode("utf-8", "replace")) + len(context.encode("utf-8", "replace")) > _MAX_SOURCE_BYTES:
        return _error("the tests and the prompt exceed the size cap")
    if len(program.encode("utf-8", "replace")) > _MAX_SOURCE_BYTES:
        # the program's own doing, so it counts against it (an `error` would not)
        return SandboxResult(False, "failed", None, "", "", 0.0, reason="the program exceeds the size cap")
    if entry_point is not None and not entry_point.isidentifier():
        return _error(f"entry point {entry_point!r} is no name")
    setup = _setup(limits.bwrap, limits.python)
    if isinstance(setup, str):
        return _error(f"sandbox unavailable: {setup}")
    return _run(program, tests, entry_point, context, limits, setup)


def run_program(program: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run a bare program (no tests) in the sandbox; it passes if it runs to the end."""
    return run_tests(program, "", None, limits)


def isolation_problem(limits: SandboxLimits | None = None) -> str:
    """Why the sandbox cannot run code here ("" when it can): checked once by a real run, then remembered."""
    limits = limits or SandboxLimits()
    return _probe(limits.bwrap, limits.python)


def require_isolation(limits: SandboxLimits | None = None) -> None:
    """Raise SandboxUnavailable, with the reason, unless every isolation layer works on this host."""
    problem = isolation_problem(limits)
    if problem:
        raise SandboxUnavailable(
            f"the code sandbox cannot run here: {problem}. Generated code is never run with fewer layers; "
            "install bubblewrap (`apt-get install bubblewrap`, done by scripts/setup.sh) on a kernel that allows "
            "user namespaces, or drop the code verifier from the config (docs/security.md)."
        )


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str, python: str) -> str:
    result = run_program("pass\n", SandboxLimits(bwrap=bwrap, python=python, wall_s=30))
    return "" if result.passed else result.reason or result.status


# ---------------------------------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class _Setup:
    bwrap: str
    python: str
    mounts: tuple[str, ...]  # bwrap arguments that lay out the read-only root
    seccomp_filter: bytes


@functools.lru_cache(maxsize=8)
def _setup(bwrap: str, python: str) -> _Setup | str:
    """The bwrap binary, the interpreter and the binds; a reason (str) when one is missing."""
    found = shutil.which(bwrap)
    if not found:
        return f"bubblewrap ({bwrap!r}) is not installed"
    if not seccomp.supported():
        return f"no seccomp filter for this architecture ({platform.machine()})"
    dropping = os.geteuid() == 0  # the run's uid is then a fresh one: the interpreter must be world-readable
    candidates = (
        [python] if python else [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    )
    chosen = ""
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and (not dropping or _others_can_read(real)):
            chosen = real
            break
    if not chosen:
        return f"no Python interpreter that an unprivileged user can read among {candidates}"
    prefixes = _prefixes(chosen)
    if isinstance(prefixes, str):
        return prefixes
    if dropping and not all(_others_can_read(p) for p in prefixes):
        return f"the library folders of {chosen} are not readable by an unprivileged user: {prefixes}"
    mounts: list[str] = []
    bound: list[str] = []
    for path in ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32"):
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            mounts += ["--ro-bind", path, path]
            bound.append(path)
    for path in prefixes:
        if not any(path == b or path.startswith(b + "/") for b in bound):
            mounts += ["--ro-bind", path, path]
            bound.append(path)
    mounts += ["--ro-bind", chosen, chosen, "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return _Setup(found, chosen, tuple(mounts), seccomp.filter_program())


def _prefixes(python: str) -> list[str] | str:
    """The interpreter's library folders (stdlib and extension modules), asked of the interpreter itself."""
    script = "import sys, sysconfig; print(sysconfig.get_paths()['stdlib']); print(sysconfig.get_paths()['platstdlib'])"
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", script], env={}, capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot ask {python} for its library folders: {error}"
    paths = sorted({os.path.realpath(line) for line in out.split("\n") if line.strip()})
    # The folder above the stdlib holds a shared libpython in prefix/lib builds.
    return sorted({os.path.dirname(p) for p in paths if os.path.isdir(p)}) or f"{python} reports no stdlib"


def _others_can_read(path: str) -> bool:
    """Whether every folder above `path` is searchable and `path` readable by any user."""
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        try:
            mode = os.stat(os.path.join(*parts[:i])).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


# ------------------------------------------------------------------------------------------------ one run


def _frame(message: dict[str, object]) -> bytes:
    body = json.dumps(message).encode("utf-8", "surrogatepass")
    return struct.pack("!I", len(body)) + body


def _run(
    program: str, tests: str, entry_point: str | None, context: str, limits: SandboxLimits, setup: _Setup
) -> SandboxResult:
    uid = limits.uid_base + secrets.randbelow(limits.uid_span) if os.geteuid() == 0 else None
    verdict_r, verdict_w = os.pipe()
    filter_r, filter_w = os.pipe()
    os.write(filter_w, setup.seccomp_filter)  # a few hundred bytes: fits the pipe buffer
    os.close(filter_w)
    tmpfs = str(limits.tmpfs_mb << 20)
    command = [
        setup.bwrap,
        "--unshare-user", "--unshare-pid", "--as-pid-1", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--disable-userns", "--uid", str(_SANDBOX_UID), "--gid", str(_SANDBOX_UID), "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--clearenv", "--seccomp", str(filter_r),
        *setup.mounts,
        "--proc", "/proc", "--dev", "/dev",
        "--size", tmpfs, "--tmpfs", "/tmp", "--size", tmpfs, "--tmpfs", "/dev/shm",
        "--remount-ro", "/", "--remount-ro", "/dev", "--chdir", "/tmp",
        setup.python, "-I", "-S", "-c", _HARNESS_SOURCE,
    ]  # fmt: skip
    nproc = limits.nproc + _OWN_PROCESSES
    rlimits = {
        "CPU": (limits.cpu_s, limits.cpu_s + 1),
        "AS": (limits.memory_mb << 20,) * 2,
        "FSIZE": (limits.file_mb << 20,) * 2,
        "NOFILE": (limits.nofile,) * 2,
        "CORE": (0, 0),
    }
    if uid is not None:
        rlimits["NPROC"] = (nproc, nproc)  # counts this run's fresh uid only (see docs/security.md otherwise)
    policy = {"verdict_fd": verdict_w, "rlimits": rlimits, "program": program, "context": context}
    payload = _frame(policy) + _frame({"tests": tests, "entry_point": entry_point})
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env={},
            pass_fds=(verdict_w, filter_r),
            start_new_session=True,  # its own process group, killed as a whole
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
        )
    except OSError as error:
        for fd in (verdict_r, verdict_w, filter_r):
            os.close(fd)
        return _error(f"could not start the sandbox: {error}")
    os.close(verdict_w)
    os.close(filter_r)
    try:
        killed_for, streams = _collect(proc, payload, verdict_r, started + limits.wall_s, limits.output_bytes)
    finally:
        os.close(verdict_r)
        _kill(proc)
    wall_s = time.monotonic() - started
    return _classify(proc.returncode, killed_for, streams, wall_s, limits, uid)


def _collect(
    proc: subprocess.Popen[bytes], payload: bytes, verdict_r: int, deadline: float, cap: int
) -> tuple[str, dict[str, bytearray]]:
    """Feed the payload, read stdout/stderr/verdict with caps until exit, time-out or overflow."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    streams = {"stdout": bytearray(), "stderr": bytearray(), "verdict": bytearray()}
    caps = {"stdout": cap, "stderr": cap, "verdict": _VERDICT_CAP}
    selector = selectors.DefaultSelector()
    stdin_fd = proc.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    selector.register(stdin_fd, selectors.EVENT_WRITE, "stdin")
    for name, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()), ("verdict", verdict_r)):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, name)
    killed_for = ""
    exited_at: float | None = None
    try:
        while any(key.data != "stdin" for key in selector.get_map().values()):
            now = time.monotonic()
            if now >= deadline:
                killed_for = "timeout"
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # bwrap is gone; whatever still holds the pipes dies with its namespace
            for key, _ in selector.select(timeout=min(0.05, max(0.0, deadline - now))):
                if key.data == "stdin":
                    try:
                        payload = payload[os.write(key.fd, payload[:65_536]) :]
                    except BlockingIOError:
                        continue
                    except OSError:
                        payload = b""  # the judge is gone: its verdict (or none) says why
                    if not payload:
                        selector.unregister(key.fd)
                        proc.stdin.close()
                    continue
                try:
                    chunk = os.read(key.fd, 65_536)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                name = key.data
                room = caps[name] + 1 - len(streams[name])
                streams[name] += chunk[: max(0, room)]
                if len(streams[name]) > caps[name] and name != "verdict":
                    killed_for = "output"
            if killed_for:
                break
    finally:
        selector.close()
    return killed_for, streams


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill bwrap's process group; the judge, pid 1 inside, dies with it (die-with-parent) and ends the namespace."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is the group id
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()


def _messages(raw: bytes) -> list[dict[str, object]]:
    """The judge's length-prefixed JSON messages; parsing stops at the first malformed one."""
    messages: list[dict[str, object]] = []
    view = bytes(raw)
    while len(view) >= 4:
        (size,) = struct.unpack("!I", view[:4])
        body = view[4 : 4 + size]
        if len(body) < size:
            break
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            break
        if not isinstance(message, dict):
            break
        messages.append(message)
        view = view[4 + size :]
    return messages


def _clean(text: str) -> str:
    """Text the program chose, made valid UTF-8 (a lone surrogate would break the Parquet writer downstream)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _isolation_mismatch(seen: object) -> str:
    """What of the confinement the judge sees differs from what was asked ("" when nothing)."""
    if not isinstance(seen, dict):
        return "no confinement report"
    wanted = {"uid": _SANDBOX_UID, "seccomp": "2", "no_new_privs": "1", "pid": 1}  # pid 1: the judge is init
    problems = [
        f"{key}={seen.get(key)!r} (wanted {value!r})" for key, value in wanted.items() if seen.get(key) != value
    ]
    env = seen.get("env")
    if not isinstance(env, dict) or any(_ALLOWED_ENV.get(key) != value for key, value in env.items()):
        problems.append(f"environment {env!r} (wanted at most {_ALLOWED_ENV})")
    for key in ("cap_eff", "cap_prm"):
        value = seen.get(key)
        if not isinstance(value, str) or value.strip("0"):
            problems.append(f"{key}={value!r} (wanted none)")
    return "; ".join(problems)


def _classify(
    returncode: int | None,
    killed_for: str,
    streams: dict[str, bytearray],
    wall_s: float,
    limits: SandboxLimits,
    uid: int | None,
) -> SandboxResult:
    """Turn what came back into one status, a reason and the line-level evidence."""
    stdout = bytes(streams["stdout"][: limits.output_bytes]).decode("utf-8", "replace")
    stderr = bytes(streams["stderr"][: limits.output_bytes]).decode("utf-8", "replace")
    messages = _messages(streams["verdict"])
    isolation: tuple[str, ...] = ()
    confinement = next((m for m in messages if m.get("kind") == "isolation"), None)
    mismatch = _isolation_mismatch(confinement.get("seen")) if confinement else ""
    if confinement and not mismatch:
        isolation = (
            "bwrap", "userns", "mountns", "pidns", "netns", "ipcns", "utsns", "seccomp", "no_new_privs", "no_caps",
            "empty_env", f"uid={uid}" if uid is not None else "uid=self", "rlimits", "judge_apart",
        )  # fmt: skip
    outcome = next((m for m in messages if m.get("kind") == "outcome"), None)
    setup_error = next((m for m in messages if m.get("kind") == "setup_error"), None)

    def result(status: str, reason: str, error_type: str = "", lines: tuple[int, ...] = ()) -> SandboxResult:
        return SandboxResult(
            status == "passed",
            status,
            returncode,
            stdout,
            stderr,
            round(wall_s, 4),
            _clean(reason),
            isolation,
            _clean(error_type),
            lines[-1] if lines else None,
            lines,
        )

    if killed_for == "output":
        return result("output_limit", f"output over {limits.output_bytes} bytes; process group killed")
    if killed_for == "timeout":
        return result("timeout", f"wall-clock limit {limits.wall_s:g} s; process group killed")
    if setup_error is not None:
        return result("error", f"sandbox setup failed: {str(setup_error.get('message'))[:300]}")
    if confinement is None:
        return result("error", f"the sandbox did not start (exit {returncode}): {stderr[-300:].strip()}")
    if mismatch:
        return result("error", f"the sandbox is not confined as asked, verdict ignored: {mismatch}")
    if outcome is None:
        if returncode is not None and returncode - 128 == signal.SIGXCPU:
            return result("timeout", f"CPU limit {limits.cpu_s} s (SIGXCPU) in the tests")
        return result("failed", f"the judge ended without a verdict (exit {returncode})")
    kind = str(outcome.get("outcome", ""))
    error_type = str(outcome.get("type", ""))[:100]
    message = str(outcome.get("message", ""))[:500]
    raw_lines = outcome.get("lines")
    lines = tuple(x for x in raw_lines if isinstance(x, int) and x > 0) if isinstance(raw_lines, list) else ()
    if kind == "passed":
        if returncode == 0:
            return result("passed", "all tests passed")
        return result("failed", f"the judge reported a pass but exited {returncode}")
    if kind == "memory" or (kind == "exception" and error_type == "MemoryError"):
        return result("memory", f"MemoryError under the {limits.memory_mb} MiB address-space limit", "MemoryError")
    if kind == "syntax_error":
        return result("syntax_error", f"{error_type}: {message}", error_type, lines)
    if kind == "test_error":
        return result("error", f"the tests do not run: {error_type}: {message}", error_type)
    if kind == "exception":
        where = f" at program line {lines[-1]}" if lines else ""
        return result("failed", f"{error_type}{where}: {message}", error_type, lines)
    if kind == "died":
        signum = outcome.get("signal")
        when = str(outcome.get("when", ""))[:40]
        if isinstance(signum, int) and signum:
            if signum == signal.SIGXCPU:
                return result("timeout", f"CPU limit {limits.cpu_s} s (SIGXCPU)")
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = str(signum)
            detail = " (hard CPU limit or the kernel)" if signum == signal.SIGKILL else ""
            return result("killed", f"killed by {name}{detail} {when}".strip())
        return result("failed", f"exited (code {outcome.get('code')}) {when}: not a pass")
    return result("failed", f"unreadable verdict {kind!r}")
