"""The test harness that runs inside the sandbox: never imported by the pipeline, shipped as `python -c` source.

Two processes, so that the verdict rests on nothing the program can reach:

    judge    this file's `main`, started by bwrap as pid 1 of the sandbox (signals from inside cannot end it). It
             reads the policy, the program and the prompt, sets the rlimits, makes itself non-dumpable (no other
             process of the sandbox uid can read or write its memory or fds), runs the prompt, forks the program
             process, and only then reads the tests. It runs the tests and writes the
             verdict to the verdict fd, which the program process never holds.
    program  the forked child: closes stdin, the verdict fd and the judge's pipe ends, runs the program, and
             answers calls. The tests see the program's functions as proxies: arguments and results cross the
             pipe as plain data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset:
             exact types, no subclasses), so a result cannot carry an `__eq__` that always agrees, and the
             program can patch nothing in the interpreter that runs the tests.

Only the judge's verdict line counts; the parent reads nothing else as a result. See docs/security.md.
"""

import builtins
import json
import os
import resource
import signal
import struct
import sys

_MAX_MESSAGE = 32 << 20  # one call's arguments or result
_MAX_DEPTH = 200  # nesting of a value that crosses the pipe
_EXACT_SCALARS = (type(None), bool, int, float, str)
# What a malformed or hostile message can raise while it is read or decoded in the judge.
_UNREADABLE = (ValueError, TypeError, OverflowError, RecursionError, MemoryError)


# Exceptions that steer control flow in the judge (a StopIteration out of a proxy called by `map` would end the
# tests' loop early, as if it had passed): these come back as ProgramError instead.
_NOT_REBUILT = (SystemExit, KeyboardInterrupt, GeneratorExit, StopIteration, StopAsyncIteration)


class ProgramDied(BaseException):
    """The program process ended while the tests waited for it (BaseException: `except Exception` in a test
    must not turn a dead program into a pass)."""


class ProgramError(Exception):
    """A program exception whose class is not a builtin: raised in the judge under this name."""


def _read_exact(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(fd):
    header = _read_exact(fd, 4)
    if header is None:
        return None
    (size,) = struct.unpack("!I", header)
    if size > _MAX_MESSAGE:
        raise ValueError("message over the size cap")
    body = _read_exact(fd, size)
    return None if body is None else json.loads(body)


def _send(fd, message):
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > _MAX_MESSAGE:
        raise ValueError("message over the size cap")
    data = struct.pack("!I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def encode(value, depth=0):
    """Plain data to a JSON tree with tags for what JSON lacks; anything else raises TypeError."""
    if depth > _MAX_DEPTH:
        raise TypeError("value nested too deep to cross the sandbox boundary")
    kind = type(value)
    if kind in _EXACT_SCALARS:
        return value
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        items = [encode(x, depth + 1) for x in value]
        return {{list: "l", tuple: "t", set: "s", frozenset: "f"}[kind]: items}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    raise TypeError(f"a {kind.__name__} cannot cross the sandbox boundary (plain data only)")


def decode(tree, depth=0):
    """The inverse of `encode`; a malformed tree raises ValueError."""
    if depth > _MAX_DEPTH + 1:
        raise ValueError("value nested too deep")
    if type(tree) in _EXACT_SCALARS:
        return tree
    if type(tree) is not dict or len(tree) != 1:
        raise ValueError("malformed value")
    ((tag, body),) = tree.items()
    if tag in ("l", "t", "s", "f") and type(body) is list:
        items = [decode(x, depth + 1) for x in body]
        return {"l": list, "t": tuple, "s": set, "f": frozenset}[tag](items)
    if tag == "d" and type(body) is list:
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in (_pair(p) for p in body)}
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2 and all(type(x) is float for x in body):
        return complex(body[0], body[1])
    raise ValueError("malformed value")


def _pair(item):
    if type(item) is not list or len(item) != 2:
        raise ValueError("malformed value")
    return item


def _program_lines(tb):
    lines = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<program>":
            lines.append(tb.tb_lineno)
        tb = tb.tb_next
    return lines


def _describe(error):
    return {
        "type": type(error).__name__[:100],
        "message": str(error)[:500],
        "lines": _program_lines(error.__traceback__),
    }


# ------------------------------------------------------------------------------------------ the program process


def _serve(program, calls_r, answers_w):
    """Run the program, report its names, then answer calls until the judge closes the pipe."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        code = compile(program, "<program>", "exec")
    except (SyntaxError, ValueError) as error:
        _send(answers_w, {"kind": "syntax_error", "type": type(error).__name__, "message": str(error)[:500],
                          "lines": [getattr(error, "lineno", 0) or 0]})  # fmt: skip
        return
    try:
        exec(code, namespace)  # the untrusted program: only ever in this forked, sandboxed process
    except BaseException as error:  # SystemExit included: exiting early is not passing
        _send(answers_w, dict(_describe(error), kind="exception"))
        return
    names = []
    for name, value in list(namespace.items()):
        if name.startswith("__") or type(value).__name__ == "module":
            continue
        if callable(value):
            names.append([name, "callable", None])
        else:
            try:
                names.append([name, "value", encode(value)])
            except TypeError:
                continue  # not plain data: the tests cannot see it
    _send(answers_w, {"kind": "ready", "names": names})
    while True:
        call = _receive(calls_r)
        if call is None:
            return
        try:
            function = namespace[call["name"]]
            result = function(*decode(call["args"]), **decode(call["kwargs"]))
            answer = {"kind": "return", "value": encode(result)}
        except BaseException as error:
            answer = dict(_describe(error), kind="raise")
        _send(answers_w, answer)


# ------------------------------------------------------------------------------------------------ the judge


class _Program:
    """The judge's handle on the program process."""

    def __init__(self, pid, calls_w, answers_r):
        self.pid = pid
        self.calls_w = calls_w
        self.answers_r = answers_r
        self.status = None

    def receive(self):
        try:
            answer = _receive(self.answers_r)
        except (OSError, *_UNREADABLE):
            answer = "malformed"
        if answer is None:
            raise ProgramDied()
        if answer == "malformed" or type(answer) is not dict:
            raise ProgramError("the program process sent an unreadable answer")
        return answer

    def call(self, name, args, kwargs):
        try:
            message = {"name": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs))}
        except TypeError as error:
            raise TypeError(f"argument of {name}(): {error}") from None
        try:
            _send(self.calls_w, message)
        except OSError:
            raise ProgramDied() from None
        answer = self.receive()
        if answer.get("kind") == "return":
            try:
                return decode(answer.get("value"))
            except _UNREADABLE:
                raise ProgramError(f"{name}() returned an unreadable value") from None
        raise _rebuild(answer)

    def wait(self):
        if self.status is None:
            try:
                os.close(self.calls_w)
            except OSError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.status = status
        return self.status


def _rebuild(answer):
    """The program's exception as raised in the judge: a builtin class by name, else ProgramError."""
    name = str(answer.get("type", "Exception"))
    message = str(answer.get("message", ""))
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)) or cls in _NOT_REBUILT:
        error = ProgramError(f"{name}: {message}")
    else:
        try:
            error = cls(message)
        except Exception:
            error = ProgramError(f"{name}: {message}")
    error.sandbox_type = name
    error.sandbox_lines = [x for x in answer.get("lines", []) if type(x) is int][:100]
    return error


def _proxy(program, name):
    def call(*args, **kwargs):
        return program.call(name, args, kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _set_limits(rlimits):
    for name, (soft, hard) in rlimits.items():
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (soft, hard))


def _make_undumpable():
    """PR_SET_DUMPABLE 0: /proc/<judge>/mem, fd and environ become unreadable to the program process."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0)")


def _self_check():
    """What the judge sees of its own confinement, checked by the parent against what it asked for."""
    status = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return {
        "uid": os.getuid(),
        "seccomp": status.get("Seccomp"),
        "no_new_privs": status.get("NoNewPrivs"),
        "cap_eff": status.get("CapEff"),
        "cap_prm": status.get("CapPrm"),
        "env": {key: value[:100] for key, value in os.environ.items()},
        "pid": os.getpid(),
    }


def main():
    """The judge: see the module docstring."""
    if __name__ != "__main__" or not sys.flags.isolated:
        raise RuntimeError("the harness runs only as the program of a sandboxed interpreter")
    policy = _receive(0)
    verdict_fd = policy["verdict_fd"]

    def verdict(message):
        try:
            _send(verdict_fd, message)
        except OSError:
            pass

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # pid 1 ignores the rest; Python's own SIGINT handler would not
        _set_limits(policy["rlimits"])
        _make_undumpable()
        verdict({"kind": "isolation", "seen": _self_check()})
        os.environ.clear()  # bwrap's PWD and the interpreter's own LC_CTYPE: the program gets nothing
    except Exception as error:
        verdict({"kind": "setup_error", "message": repr(error)[:300]})
        os._exit(70)
    # The prompt runs before the program process exists, so nothing the program does can disturb it.
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(_compile_context(policy["context"]), namespace)  # the problem's own prompt, never model text
    except BaseException as error:
        verdict({"kind": "outcome", "outcome": "test_error", "type": type(error).__name__, "message": str(error)[:500]})
        os._exit(0)
    calls_r, calls_w = os.pipe()
    answers_r, answers_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        # The program process holds nothing of the judge's: not the payload, the verdict fd or its pipe ends.
        for fd in (0, verdict_fd, calls_w, answers_r):
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        code = 0
        try:
            _serve(policy["program"], calls_r, answers_w)
        except BaseException:
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)
    os.close(calls_r)
    os.close(answers_w)
    del policy["program"]
    tests = _receive(0)  # only now: the program process never had the tests in its memory
    program = _Program(pid, calls_w, answers_r)
    verdict(_judge(program, tests["tests"], tests["entry_point"], namespace))
    sys.stdout.flush()
    os._exit(0)


def _judge(program, tests, entry_point, namespace):
    """Run the tests against the program process; the verdict as a dict, whatever the program sent."""
    try:
        return _run_tests(program, tests, entry_point, namespace)
    except BaseException as error:  # a judge that ends without a verdict would hide what went wrong
        return {"kind": "outcome", "outcome": "exception", "type": "ProgramError", "message": repr(error)[:500]}


def _run_tests(program, tests, entry_point, namespace):
    try:
        hello = program.receive()
    except ProgramDied:
        return _died(program, "before the tests ran")
    except ProgramError as error:
        return {"kind": "outcome", "outcome": "exception", "type": "ProgramError", "message": str(error)}
    kind = hello.get("kind")
    if kind in ("syntax_error", "exception"):
        outcome = "syntax_error" if kind == "syntax_error" else "exception"
        lines = [x for x in hello.get("lines", []) if type(x) is int][:100]
        return {"kind": "outcome", "outcome": outcome, "type": str(hello.get("type", ""))[:100],
                "message": str(hello.get("message", ""))[:500], "lines": lines}  # fmt: skip
    if kind != "ready" or type(hello.get("names")) is not list:
        return {"kind": "outcome", "outcome": "exception", "type": "ProgramError", "message": "no program handshake"}
    try:
        test_code = compile(tests, "<tests>", "exec")
        check_code = compile(f"check({entry_point})", "<check>", "exec") if entry_point else None
    except (SyntaxError, ValueError) as error:
        return {"kind": "outcome", "outcome": "test_error", "type": type(error).__name__, "message": str(error)[:500]}
    # The program's names reach the tests unless they would shadow a builtin or the prompt's own definitions
    # (a program redefining `abs` or the prompt's helper must not change what the tests compute).
    protected = (set(namespace) | set(dir(builtins))) - {entry_point}
    namespace.pop(entry_point, None)  # the prompt's stub: only the program's entry point counts
    for entry in hello["names"]:
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str or not entry[0].isidentifier():
            continue
        name, what, value = entry
        if name in protected or name.startswith("__"):
            continue
        try:
            namespace[name] = _proxy(program, name) if what == "callable" else decode(value)
        except _UNREADABLE:
            continue
    try:
        exec(test_code, namespace)  # the tests come with the problem, never from the model
        if check_code is not None:
            exec(check_code, namespace)
    except ProgramDied:
        return _died(program, "while the tests ran")
    except MemoryError:
        return {"kind": "outcome", "outcome": "memory", "type": "MemoryError", "message": ""}
    except BaseException as error:
        return {"kind": "outcome", "outcome": "exception", "type": getattr(error, "sandbox_type", type(error).__name__),
                "message": str(error)[:500], "lines": getattr(error, "sandbox_lines", [])}  # fmt: skip
    return {"kind": "outcome", "outcome": "passed"}


def _compile_context(context):
    """The prompt compiled; a prompt that ends on a bare `def f(x):` header gets a `pass` body to stand alone."""
    try:
        return compile(context, "<context>", "exec")
    except SyntaxError:
        last = context.rstrip().rsplit("\n", 1)[-1]
        if not last.rstrip().endswith(":"):
            raise
        indent = last[: len(last) - len(last.lstrip())]
        return compile(context.rstrip() + "\n" + indent + "    pass\n", "<context>", "exec")


def _died(program, when):
    status = program.wait()
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
    return {"kind": "outcome", "outcome": "died", "when": when, "code": code, "signal": signum}


if __name__ == "__main__":
    main()
