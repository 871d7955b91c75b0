"""Tests for the code sandbox: hostile programs are stopped with the right status and the host stays untouched."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotators.verifiers.sandbox import SandboxLimits, SandboxResult, run_program, run_tests

ADD_TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
TIGHT = SandboxLimits(wall_s=1.5, cpu_s=3, memory_mb=128, nproc=4)


def _live_processes_of(result: SandboxResult) -> int:
    """How many live processes still run as the run's sandbox uid (0 when it had none)."""
    uids = [int(x.split("=", 1)[1]) for x in result.isolation if x.startswith("uid=")]
    if not uids:
        return 0
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uids[0]:
                    count += 1
            except OSError:
                continue
    return count


def _work_dirs() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("stepforge-sbx-")}


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


def _connect_program(port: int) -> str:
    return (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "s.sendall(b'exfiltrated')\n"
        "s.close()\n"
    )


def test_the_child_program_never_runs_in_this_process(monkeypatch) -> None:
    # It holds the `exec` of untrusted code: called here, it must refuse before reading or running anything.
    from annotators.verifiers import sandbox

    monkeypatch.setattr("sys.stdin", None)  # reading the payload would fail loudly rather than block
    with pytest.raises(RuntimeError, match="only as the program of a sandboxed interpreter"):
        sandbox._sandbox_child()
    assert run_program("x = 1").passed  # and the real child still runs


def test_passing_and_failing_programs() -> None:
    ok = run_tests("def add(a, b):\n    return a + b\n", ADD_TESTS, "add")
    assert ok.passed and ok.status == "passed" and ok.returncode == 0
    bad = run_tests("def add(a, b):\n    return a - b\n", ADD_TESTS, "add")
    assert not bad.passed and bad.status == "failed" and bad.error_type == "AssertionError"


def test_exception_reports_the_program_line() -> None:
    program = "def add(a, b):\n    total = a + b\n    return [total][1]\n"
    result = run_tests(program, ADD_TESTS, "add")
    assert result.status == "failed" and result.error_type == "IndexError" and result.error_line == 3


def test_syntax_error_is_its_own_status() -> None:
    result = run_tests("def add(a, b):\n    return a +\n", ADD_TESTS, "add")
    assert result.status == "syntax_error" and result.error_line == 2


@pytest.mark.parametrize("early_exit", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
def test_exiting_before_the_tests_is_not_passing(early_exit: str) -> None:
    result = run_tests(early_exit + "def add(a, b):\n    return a + b\n", ADD_TESTS, "add")
    assert result.status == "failed" and not result.passed


def test_isolation_applied_is_reported() -> None:
    result = run_program("pass")
    assert {"rlimits", "audit_hook"} <= set(result.isolation)
    if os.geteuid() == 0:
        assert any(x.startswith("uid=") for x in result.isolation) or "nofork" in result.isolation


def test_fork_bomb_is_contained_and_reaped() -> None:
    result = run_program(FORK_BOMB, TIGHT)
    if "nofork" in result.isolation:  # root without a droppable uid: forking itself is denied
        assert result.status == "denied"
    else:
        assert result.status == "timeout", result
    assert result.wall_s < TIGHT.wall_s + 3
    assert _live_processes_of(result) == 0


def test_fork_bomb_without_namespaces_is_still_contained() -> None:
    limits = SandboxLimits(wall_s=1.5, cpu_s=3, nproc=4, namespaces=False)
    result = run_program(FORK_BOMB, limits)
    assert result.status in {"timeout", "denied"}, result
    assert _live_processes_of(result) == 0


def test_infinite_loop_times_out() -> None:
    result = run_program("while True:\n    pass\n", SandboxLimits(wall_s=1.0))
    assert result.status == "timeout" and "wall-clock" in result.reason
    assert result.wall_s < 3


def test_cpu_limit_stops_a_busy_loop() -> None:
    result = run_program("while True:\n    pass\n", SandboxLimits(wall_s=8.0, cpu_s=1))
    assert result.status == "timeout" and "CPU" in result.reason


def test_memory_hog_is_stopped() -> None:
    limits = SandboxLimits(wall_s=10, memory_mb=128)
    result = run_program("hog = []\nwhile True:\n    hog.append(bytearray(2**22))\n", limits)
    assert result.status == "memory", result


def test_output_flood_is_capped() -> None:
    result = run_program("while True:\n    print('x' * 10000)\n", SandboxLimits(wall_s=5, output_bytes=20_000))
    assert result.status == "output_limit" and len(result.stdout) <= 20_000


def test_write_outside_the_dir_is_denied_and_host_untouched(tmp_path: Path) -> None:
    escape = Path(tempfile.gettempdir()) / f"stepforge-escape-{secrets.token_hex(6)}"
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("host data")
    for target in (escape, sentinel):
        result = run_program(f"open({str(target)!r}, 'w').write('pwned')\n")
        assert result.status == "denied" and str(target) in result.reason
    assert not escape.exists()
    assert sentinel.read_text() == "host data"


def test_writes_inside_the_work_dir_are_allowed_and_cleaned() -> None:
    before = _work_dirs()
    program = "import os, tempfile\nopen('local.txt', 'w').write('ok')\ntempfile.mkstemp()\nassert os.path.exists('local.txt')\n"
    assert run_program(program).status == "passed"
    assert _work_dirs() == before


def test_mount_namespace_keeps_shell_writes_off_the_host() -> None:
    probe = run_program("pass", SandboxLimits(audit_hook=False))
    if "mountns" not in probe.isolation or not any(x.startswith("uid=") for x in probe.isolation):
        pytest.skip(f"no mount namespace / uid drop here: {probe.isolation}")
    escape = Path(tempfile.gettempdir()) / f"stepforge-escape-{secrets.token_hex(6)}"
    program = f"import os\nassert os.system('echo pwned > {escape}') == 0\nassert open({str(escape)!r}).read()\n"
    result = run_program(program, SandboxLimits(audit_hook=False))
    assert result.status == "passed", result  # the write landed in the run's private /tmp
    assert not escape.exists()
    project = run_program("open('/work/escape-probe', 'w')\n", SandboxLimits(audit_hook=False))
    assert project.status == "failed" and not Path("/work/escape-probe").exists()


def test_connection_to_a_local_server_is_denied(tcp_server: tuple[int, list[bytes]]) -> None:
    port, received = tcp_server
    result = run_program(_connect_program(port), SandboxLimits(wall_s=10))
    assert result.status == "denied" and "socket" in result.reason
    assert received == []


def test_network_namespace_blocks_loopback_without_the_hook(tcp_server: tuple[int, list[bytes]]) -> None:
    port, received = tcp_server
    result = run_program(_connect_program(port), SandboxLimits(wall_s=10, audit_hook=False))
    if "netns" not in result.isolation:
        pytest.skip(f"no network namespace here: {result.isolation}")
    assert result.status == "failed" and result.error_type == "OSError", result  # ENETUNREACH
    assert received == []


def test_spawning_programs_and_ctypes_are_denied() -> None:
    assert run_program("import subprocess\nsubprocess.run(['true'])\n").status == "denied"
    assert run_program("import ctypes\nctypes.CDLL(None)\n").status == "denied"


def test_the_pipeline_goes_on_after_many_hostile_runs() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    dirs_before = _work_dirs()
    looping = SandboxLimits(wall_s=0.5, cpu_s=2, nproc=4)
    roomy = SandboxLimits(wall_s=10, memory_mb=128, nproc=4)  # a loaded machine must not turn these into time-outs
    programs = [
        ("while True:\n    pass\n", "timeout", looping),
        ("x = bytearray(2**34)\n", "memory", roomy),
        ("import socket\nsocket.socket()\n", "denied", roomy),
        ("raise ValueError('boom')\n", "failed", roomy),
        ("print('hello')\n", "passed", roomy),
    ]
    for _ in range(3):
        for program, status, limits in programs:
            result = run_program(program, limits)
            assert result.status == status, result
    assert run_tests("def add(a, b):\n    return a + b\n", ADD_TESTS, "add").passed
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 1
    assert _work_dirs() == dirs_before


def test_bad_inputs_are_errors_not_crashes() -> None:
    assert run_tests("x = 1\n", "def check(c):\n    pass\n", "not a name").status == "error"
    assert run_tests("x = 1\n", "def check(c:\n", "x").status == "error"
    with pytest.raises(ValueError, match="wall_s"):
        SandboxLimits(wall_s=0)
