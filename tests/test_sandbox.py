"""Tests for the code sandbox: each attack is a program run through the project's own API, and is contained.

Contained means: the parent never raises, nothing is left on the host (files, processes, IPC objects, sockets),
no parent environment is visible, and a wrong solution is never labelled correct by tampering with its harness.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotators.verifiers import sandbox
from annotators.verifiers.code import CodeVerifier
from annotators.verifiers.sandbox import (
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    require_isolation,
    run_program,
    run_tests,
)
from tests.conftest import needs_sandbox

ADD_TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
MAP_TESTS = "def check(candidate):\n    for got in map(candidate, (1, -1), (2, 1)):\n        assert got in (3, 0)\n"
WRONG_ADD = "def add(a, b):\n    return a - b\n"
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
TIGHT = SandboxLimits(wall_s=1.5, cpu_s=3, memory_mb=128, nproc=4)
FULL_ISOLATION = {"bwrap", "userns", "mountns", "pidns", "netns", "ipcns", "utsns", "seccomp", "no_new_privs"}


def _uid_of(result: SandboxResult) -> int | None:
    uids = [int(x.split("=", 1)[1]) for x in result.isolation if x.startswith("uid=") and x[4:].isdigit()]
    return uids[0] if uids else None


def _processes_of(uid: int) -> list[int]:
    """Live processes whose real uid is `uid` (read from status: non-dumpable ones show root as /proc owner)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and fields.get("State", "").split()[:1] not in (
            ["Z"],
            ["X"],
        ):
            found.append(int(entry))
    return found


def _nothing_left(result: SandboxResult, within_s: float = 3.0) -> bool:
    """No process of the run's uid is alive (the namespace dies with its init, a moment after bwrap)."""
    uid = _uid_of(result)
    if uid is None:
        return True
    deadline = time.monotonic() + within_s
    while _processes_of(uid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _sysv_ipc() -> tuple[str, ...]:
    rows = []
    for kind in ("shm", "sem", "msg"):
        try:
            rows += Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
    return tuple(sorted(rows))


@pytest.fixture
def tcp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 run by the test; it records whatever reaches it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    received.append(conn.recv(1024) or b"<connected>")
                except OSError:
                    received.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.fixture
def unix_servers(tmp_path: Path) -> Iterator[tuple[str, str, list[bytes]]]:
    """A UNIX socket server on a host path and one on an abstract name; they record whatever reaches them."""
    path = str(tmp_path / "host.sock")
    abstract = f"\0stepforge-test-{secrets.token_hex(6)}"
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(4)
        server.settimeout(0.1)
        servers.append(server)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            for server in servers:
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                with conn:
                    received.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, abstract, received
    stop.set()
    thread.join(timeout=2)
    for server in servers:
        server.close()


# ------------------------------------------------------------------------------------------- plain behaviour


@needs_sandbox
def test_passing_and_failing_programs() -> None:
    ok = run_tests("def add(a, b):\n    return a + b\n", ADD_TESTS, "add")
    assert ok.passed and ok.status == "passed" and ok.returncode == 0
    bad = run_tests(WRONG_ADD, ADD_TESTS, "add")
    assert not bad.passed and bad.status == "failed" and bad.error_type == "AssertionError"


@needs_sandbox
def test_exception_reports_the_program_line() -> None:
    program = "def add(a, b):\n    total = a + b\n    return [total][1]\n"
    result = run_tests(program, ADD_TESTS, "add")
    assert result.status == "failed" and result.error_type == "IndexError" and result.error_line == 3


@needs_sandbox
def test_syntax_error_is_its_own_status() -> None:
    result = run_tests("def add(a, b):\n    return a +\n", ADD_TESTS, "add")
    assert result.status == "syntax_error" and result.error_line == 2


@needs_sandbox
def test_program_helpers_and_values_are_visible_to_the_tests() -> None:
    program = "SCALE = 10\ndef helper(x):\n    return x * SCALE\ndef f(x):\n    return helper(x) + 1\n"
    tests = "def check(candidate):\n    assert candidate(2) == helper(2) + 1 == 21 and SCALE == 10\n"
    assert run_tests(program, tests, "f").passed
    containers = "def f():\n    return [1, (2, 3), {4: {5}}, frozenset({6}), b'x', 1+2j, None, 1.5, 'é', True]\n"
    expected = "[1, (2, 3), {4: {5}}, frozenset({6}), b'x', 1+2j, None, 1.5, 'é', True]"
    assert run_tests(containers, f"def check(c):\n    assert c() == {expected}\n", "f").passed


@needs_sandbox
def test_exceptions_cross_as_builtin_classes() -> None:
    program = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    tests = "def check(c):\n    try:\n        c(-1)\n    except ValueError as e:\n        assert 'negative' in str(e)\n    else:\n        raise AssertionError\n"
    assert run_tests(program, tests, "f").passed


@pytest.mark.parametrize("early_exit", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
@needs_sandbox
def test_exiting_before_the_tests_is_not_passing(early_exit: str) -> None:
    result = run_tests(early_exit + "def add(a, b):\n    return a + b\n", ADD_TESTS, "add")
    assert result.status == "failed" and not result.passed


@needs_sandbox
def test_exiting_inside_a_call_is_not_passing() -> None:
    for body in ("import os; os._exit(0)", "import sys; sys.exit(0)", "raise SystemExit(0)"):
        result = run_tests(f"def add(a, b):\n    {body}\n", ADD_TESTS, "add")
        assert result.status == "failed", (body, result)


@needs_sandbox
def test_every_layer_is_applied_and_reported() -> None:
    result = run_program(
        "import os\n"
        "status = open('/proc/self/status').read()\n"
        "assert 'Seccomp:\\t2' in status and 'NoNewPrivs:\\t1' in status, status\n"
        "assert 'CapEff:\\t0000000000000000' in status\n"
        "assert os.getuid() == 65534 and dict(os.environ) == {}\n"
        "assert not {'home', 'work', 'run', 'var', 'srv', 'mnt'} & set(os.listdir('/')), os.listdir('/')\n"
        "assert os.getpid() < 10, os.getpid()\n"
    )
    assert result.passed, result
    assert FULL_ISOLATION <= set(result.isolation)
    if os.geteuid() == 0:
        assert _uid_of(result) is not None  # a fresh host uid per run


@needs_sandbox
def test_fork_bomb_is_contained_and_reaped() -> None:
    result = run_program(FORK_BOMB, TIGHT)
    assert result.status == "timeout", result
    assert result.wall_s < TIGHT.wall_s + 3
    assert _nothing_left(result)


@needs_sandbox
def test_a_setsid_child_does_not_outlive_the_run() -> None:
    program = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
    )
    result = run_program(program, SandboxLimits(wall_s=5))
    assert result.passed, result
    assert _nothing_left(result)


@needs_sandbox
def test_infinite_loop_times_out() -> None:
    result = run_program("while True:\n    pass\n", SandboxLimits(wall_s=1.0))
    assert result.status == "timeout" and "wall-clock" in result.reason
    assert result.wall_s < 3


@needs_sandbox
def test_cpu_limit_stops_a_busy_loop() -> None:
    result = run_program("while True:\n    pass\n", SandboxLimits(wall_s=8.0, cpu_s=1))
    assert result.status == "timeout" and "CPU" in result.reason


@needs_sandbox
def test_memory_hog_is_stopped() -> None:
    limits = SandboxLimits(wall_s=10, memory_mb=128)
    result = run_program("hog = []\nwhile True:\n    hog.append(bytearray(2**22))\n", limits)
    assert result.status == "memory", result


@needs_sandbox
def test_output_flood_is_capped() -> None:
    result = run_program("while True:\n    print('x' * 10000)\n", SandboxLimits(wall_s=5, output_bytes=20_000))
    assert result.status == "output_limit" and len(result.stdout) <= 20_000


# -------------------------------------------------------------------------------------------- the host stays


@needs_sandbox
def test_writes_never_reach_the_host(tmp_path: Path) -> None:
    escape = Path(tempfile.gettempdir()) / f"stepforge-escape-{secrets.token_hex(6)}"
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("host data")
    targets = [str(escape), str(sentinel), "/dev/shm/stepforge-escape", "/work/escape-probe", "/root/escape-probe"]
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    for target in targets:
        head, tail = os.path.split(target)
        for program in (
            f"open({target!r}, 'w').write('pwned')\n",
            # through a directory fd, as an audit hook's path check would miss it
            f"import os\nfd = os.open({head!r}, os.O_RDONLY)\nos.close(os.open({tail!r}, os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n",
            f"import os\nfd = os.open('/', os.O_RDONLY)\nos.close(os.open({target.lstrip('/')!r}, os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n",
        ):
            assert run_program(program).status in ("failed", "passed")
    # the private /tmp and /dev/shm take writes, which vanish with the run
    private = "import os\nfor d in ('/tmp', '/dev/shm'):\n    open(os.path.join(d, 'x'), 'w').write('ok')\n"
    assert run_program(private).passed
    assert not escape.exists() and not Path("/work/escape-probe").exists() and not Path("/root/escape-probe").exists()
    assert sentinel.read_text() == "host data"
    assert (set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()) == shm_before


@needs_sandbox
def test_host_files_and_secrets_are_not_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = f"hf_{secrets.token_hex(16)}"
    monkeypatch.setenv("HF_TOKEN", token)
    secret_file = tmp_path / "credentials.json"
    secret_file.write_text(token)
    program = (
        "import os\n"
        "seen = [repr(dict(os.environ))]\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        for name in ('environ', 'cmdline'):\n"
        "            try:\n"
        "                seen.append(open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1'))\n"
        "            except OSError as e:\n"
        "                seen.append(repr(e))\n"
        f"for path in ({str(secret_file)!r}, '/root/.bashrc', '/etc/passwd', '/work', '/home', os.getcwd()):\n"
        "    try:\n"
        "        seen.append(open(path).read() if os.path.isfile(path) else repr(os.listdir(path)))\n"
        "    except OSError as e:\n"
        "        seen.append(f'{path}: {e!r}')\n"
        "print('\\n'.join(seen))\n"
        "raise ValueError(' '.join(seen)[-400:])\n"
    )
    result = run_program(program)
    assert result.status == "failed", result
    everything = result.stdout + result.stderr + result.reason
    assert token not in everything and "HF_TOKEN" not in everything
    assert str(secret_file) in result.stdout  # the probe ran and reported the path as missing


@needs_sandbox
def test_network_is_unreachable(
    tcp_server: tuple[int, list[bytes]], unix_servers: tuple[str, str, list[bytes]]
) -> None:
    port, received_tcp = tcp_server
    path, abstract, received_unix = unix_servers
    for address, family in (
        (f"('127.0.0.1', {port})", "AF_INET"),
        (repr(path), "AF_UNIX"),
        (repr(abstract), "AF_UNIX"),
    ):
        program = (
            "import socket\n"
            f"s = socket.socket(socket.{family}, socket.SOCK_STREAM)\n"
            "s.settimeout(1)\n"
            f"s.connect({address})\n"
            "s.sendall(b'exfiltrated')\n"
        )
        result = run_program(program, SandboxLimits(wall_s=10))
        assert result.status == "failed" and result.error_type in (
            "PermissionError",
            "FileNotFoundError",
            "ConnectionRefusedError",
            "OSError",
        ), result
    for family in ("AF_NETLINK", "AF_PACKET", "AF_VSOCK"):
        result = run_program(
            f"import socket\nsocket.socket(socket.{family}, socket.SOCK_RAW if '{family}' != 'AF_VSOCK' else socket.SOCK_STREAM)\n"
        )
        assert result.status == "failed", (family, result)
    time.sleep(0.2)
    assert received_tcp == [] and received_unix == []


@needs_sandbox
def test_sysv_ipc_is_left_behind_nowhere() -> None:
    before = _sysv_ipc()
    program = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "shm = libc.shmget(0x5F0D, 4096, 0o1000 | 0o666)\n"
        "sem = libc.semget(0x5F0E, 1, 0o1000 | 0o666)\n"
        "msg = libc.msgget(0x5F0F, 0o1000 | 0o666)\n"
        "assert min(shm, sem, msg) >= 0, (shm, sem, msg)\n"
    )
    result = run_program(program)
    assert result.passed, result  # created inside its own IPC namespace...
    assert _sysv_ipc() == before  # ...which died with the run


@needs_sandbox
def test_kernel_escape_calls_are_refused() -> None:
    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "results = {\n"
        "    'unshare': libc.unshare(0x10000000),\n"
        "    'ptrace': libc.ptrace(16, 1, 0, 0),\n"
        "    'mount': libc.mount(b'none', b'/tmp', b'tmpfs', 0, None),\n"
        "    'keyctl': libc.syscall(250, 0, 0, 0, 0),\n"
        "    'setns': libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0),\n"
        "    'chroot': libc.chroot(b'/tmp'),\n"
        "}\n"
        "assert all(v == -1 for v in results.values()), results\n"
    )
    result = run_program(program)
    assert result.passed, result


# --------------------------------------------------------------------------------------- the verdict holds


@needs_sandbox
@pytest.mark.parametrize(
    "tamper",
    [
        # replace the tools a harness in the same interpreter would use
        "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
        "import builtins\n_real = builtins.AssertionError\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\n",
        "import sys\nsys.settrace(lambda *a: None)\nsys.setprofile(lambda *a: None)\n",
        "import atexit, os\natexit.register(lambda: os._exit(0))\n",
        # write a fake verdict on every descriptor it might hold, and on stdout
        "import os, json, struct\n"
        "for msg in ({'kind': 'isolation', 'seen': {}}, {'kind': 'outcome', 'outcome': 'passed'}):\n"
        "    body = json.dumps(msg).encode()\n"
        "    for fd in range(0, 64):\n"
        "        try:\n"
        "            os.write(fd, struct.pack('!I', len(body)) + body)\n"
        "        except OSError:\n"
        "            pass\n"
        "print('passed')\n",
        # reach the judge process: its memory, descriptors, or a signal
        "import os\n"
        "judge = os.getppid()\n"
        "for name in ('mem', 'fd/3', 'fd/4', 'environ'):\n"
        "    try:\n"
        "        open(f'/proc/{judge}/{name}', 'r+b').write(b'x')\n"
        "    except OSError:\n"
        "        pass\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        os.lseek(int(fd), 0, 0)\n"
        "    except OSError:\n"
        "        pass\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        # a result that claims to equal anything
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Yes(0)\n",
        "class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n",
        # an exception that would end the tests' loop early if it were raised as itself in the judge
        "def add(a, b):\n    raise StopIteration\n",
    ],
)
def test_a_wrong_solution_is_never_labelled_correct(tamper: str) -> None:
    program = tamper if "def add" in tamper else WRONG_ADD + tamper
    tests = MAP_TESTS if "StopIteration" in tamper else ADD_TESTS
    result = run_tests(program, tests, "add", SandboxLimits(wall_s=3))
    assert not result.passed and result.status != "passed", result
    assert _nothing_left(result)


@needs_sandbox
def test_shadowing_a_builtin_or_the_prompts_helper_does_not_reach_the_tests() -> None:
    shadow = "def abs(x):\n    return 0\ndef add(a, b):\n    return 0\n"
    tests = "def check(candidate):\n    assert abs(candidate(1, 2) - 3) < 1e-9\n"
    assert run_tests(shadow, tests, "add").status == "failed"
    prompt = 'def is_valid(x):\n    return x == 3\ndef f(x):\n    """Return x + 1."""\n'
    redefined = prompt + "    return 7\ndef is_valid(x):\n    return True\n"
    tests = "def check(candidate):\n    assert is_valid(candidate(2))\n"
    assert run_tests(redefined, tests, "f", context=prompt).status == "failed"
    right = prompt + "    return x + 1\n"
    assert run_tests(right, tests, "f", context=prompt).passed  # the prompt's stub is replaced by the program's f


@needs_sandbox
def test_the_judge_is_out_of_reach_as_pid_1() -> None:
    # pid 1 is the non-dumpable judge: its memory cannot be written (a writable init would run code past every
    # limit and outlive the run), and signals from inside the namespace do not reach it.
    probe = (
        "import os, signal\n"
        "for name in ('mem', 'syscall', 'fd/0'):\n"
        "    try:\n"
        "        open(f'/proc/1/{name}', 'r+b' if name == 'mem' else 'rb')\n"
        "    except PermissionError:\n"
        "        continue\n"
        "    raise AssertionError(f'/proc/1/{name} is open to the program')\n"
        "for signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):\n"
        "    os.kill(1, signum)\n"
        "def add(a, b):\n"
        "    return a + b\n"
    )
    result = run_tests(probe, ADD_TESTS, "add", SandboxLimits(wall_s=5))
    assert result.passed, result
    assert _nothing_left(result)


@needs_sandbox
def test_dev_is_read_only() -> None:
    result = run_program("open('/dev/filler', 'wb').write(b'x' * 4096)\n")
    assert result.status == "failed" and result.error_type == "OSError" and "Read-only" in result.reason, result


@needs_sandbox
def test_a_wrong_program_cannot_turn_its_failure_into_a_sandbox_error() -> None:
    # `error` means the sandbox or the tests broke, which the code verifier does not count against the line.
    prompt = "from typing import List\nimport collections\n"
    for attack in (
        "import os, signal, threading\nthreading.Timer(0.002, lambda: os.kill(os.getppid(), signal.SIGINT)).start()\n",
        "import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (0, 0))\n",
        "import os, resource\nresource.prlimit(1, resource.RLIMIT_AS, (1 << 20, 1 << 20))\n",
    ):
        program = prompt + attack + "import time\ntime.sleep(0.05)\n" + WRONG_ADD
        result = run_tests(program, ADD_TESTS, "add", SandboxLimits(wall_s=5), context=prompt)
        assert result.status == "failed", (attack, result)


@needs_sandbox
def test_an_oversized_program_fails_and_oversized_tests_are_an_error() -> None:
    padded = WRONG_ADD + "#" + "x" * (sandbox._MAX_SOURCE_BYTES + 10) + "\n"
    assert run_tests(padded, ADD_TESTS, "add").status == "failed"
    assert run_tests(WRONG_ADD, ADD_TESTS + "#" + "x" * sandbox._MAX_SOURCE_BYTES, "add").status == "error"


@needs_sandbox
def test_a_forged_handshake_cannot_crash_the_judge() -> None:
    # The program holds its answers pipe while it runs: it can send a handshake of its own making.
    forged = (
        "import os, json, struct\n"
        "def add(a, b):\n    return a - b\n"
        "for value in ({'c': [10**400, 0]}, {'c': ['x', 0]}, {'d': [[[1], 2]]}, {'q': 1}):\n"
        "    body = json.dumps({'kind': 'ready', 'names': [['zz', 'value', value]]}).encode()\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            os.write(int(fd), struct.pack('!I', len(body)) + body)\n"
        "        except OSError:\n"
        "            pass\n"
        "os._exit(0)\n"
    )
    result = run_tests(forged, ADD_TESTS, "add")
    assert result.status == "failed" and "without a verdict" not in result.reason, result
    assert "Traceback" not in result.stderr, result.stderr


@needs_sandbox
def test_program_text_in_the_reason_is_valid_utf8() -> None:
    result = run_tests("def add(a, b):\n    raise ValueError(chr(0xDC80))\n", ADD_TESTS, "add")
    assert result.status == "failed"
    result.reason.encode("utf-8")  # a lone surrogate would raise here, and in the Parquet writer


@needs_sandbox
def test_a_forged_setup_error_does_not_weaken_the_next_run() -> None:
    forged = (
        "import os, json, struct\n"
        "body = json.dumps({'kind': 'setup_error', 'message': 'mount namespace: forged'}).encode()\n"
        "for fd in range(64):\n"
        "    try:\n"
        "        os.write(fd, struct.pack('!I', len(body)) + body)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('sandbox setup failed: mount namespace')\n"
    )
    run_program(forged)
    after = run_program("pass\n")
    assert after.passed and FULL_ISOLATION <= set(after.isolation)


def test_malformed_judge_output_never_raises_in_the_parent() -> None:
    limits = SandboxLimits()
    seen = {
        "uid": 65534,
        "seccomp": "2",
        "no_new_privs": "1",
        "cap_eff": "0" * 16,
        "cap_prm": "0" * 16,
        "env": {},
        "pid": 1,
    }
    good_isolation = json.dumps({"kind": "isolation", "seen": seen}).encode()

    def framed(*bodies: bytes) -> bytearray:
        return bytearray(b"".join(struct.pack("!I", len(b)) + b for b in bodies))

    garbage = [
        b"\xff" * 100,
        framed(b"not json"),
        framed(b"[1, 2]"),
        framed(good_isolation, b'{"kind": "outcome", "outcome": [], "lines": "x", "signal": "x"}'),
        framed(good_isolation, b'{"kind": "outcome", "outcome": "died", "signal": 99999}'),
        framed(good_isolation, b'{"kind": "outcome", "outcome": "exception", "lines": [1e308, -1, "2", 3]}'),
        framed(good_isolation, b"[" * 100_000),
        framed(b'{"kind": "isolation", "seen": {"uid": 0}}', b'{"kind": "outcome", "outcome": "passed"}'),
        struct.pack("!I", 2**31) + b"{}",
    ]
    for raw in garbage:
        streams = {"stdout": bytearray(b"\xff\xfe"), "stderr": bytearray(), "verdict": bytearray(raw)}
        result = sandbox._classify(0, "", streams, 0.1, limits, None)
        assert not result.passed and result.status in ("failed", "error", "killed"), (raw[:40], result)


# ------------------------------------------------------------------------------------------- no weaker run


def test_no_bwrap_means_no_run_and_a_clear_refusal() -> None:
    limits = SandboxLimits(bwrap="/nonexistent/bwrap")
    result = run_program("print('ran')\n", limits)
    assert result.status == "error" and "bubblewrap" in result.reason and result.stdout == ""
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        require_isolation(limits)
    with pytest.raises(SandboxUnavailable, match="never run with fewer layers"):
        CodeVerifier({"bwrap": "/nonexistent/bwrap"})


def test_an_unreadable_interpreter_means_no_run(tmp_path: Path) -> None:
    result = run_program("print('ran')\n", SandboxLimits(python=str(tmp_path / "no-python")))
    assert result.status == "error" and "interpreter" in result.reason


@needs_sandbox
def test_the_pipeline_goes_on_after_many_hostile_runs() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    looping = SandboxLimits(wall_s=0.5, cpu_s=2, nproc=4)
    roomy = SandboxLimits(wall_s=10, memory_mb=128, nproc=4)  # a loaded machine must not turn these into time-outs
    programs = [
        ("while True:\n    pass\n", "timeout", looping),
        ("x = bytearray(2**34)\n", "memory", roomy),
        ("import socket\nsocket.socket()\n", "failed", roomy),
        ("raise ValueError('boom')\n", "failed", roomy),
        ("import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00' * 100)\n", "passed", roomy),
        ("print('hello')\n", "passed", roomy),
    ]
    for _ in range(2):
        for program, status, limits in programs:
            result = run_program(program, limits)
            assert result.status == status, result
    assert run_tests("def add(a, b):\n    return a + b\n", ADD_TESTS, "add").passed
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 1


@needs_sandbox
def test_bad_inputs_are_errors_not_crashes() -> None:
    assert run_tests("x = 1\n", "def check(c):\n    pass\n", "not a name").status == "error"
    assert run_tests("x = 1\n", "def check(c:\n", "x").status == "error"
    assert run_tests("x = '\udcff'\n", ADD_TESTS, "add").status in ("failed", "syntax_error")
    assert run_tests("\x00\n", ADD_TESTS, "add").status == "syntax_error"
    with pytest.raises(ValueError, match="wall_s"):
        SandboxLimits(wall_s=0)
