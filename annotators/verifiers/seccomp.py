"""The seccomp filter every sandboxed program runs under, as the classic-BPF bytes `bwrap --seccomp FD` loads.

Why hand-built: the filter is a short deny list, and building it here needs no compiled binding (libseccomp's
Python module is not on the package index for every interpreter). Syscall numbers come from the kernel's
`asm/unistd_64.h` (x86-64) and `asm-generic/unistd.h` (arm64); `docs/security.md` says why each is denied.

Denied calls fail with EPERM (as does `prlimit` on another process) (ENOSYS for clone3, so the C library falls back to clone, whose flags a filter
can read); a filter built for another architecture, or an x32 call on x86-64, kills the process.
"""

from __future__ import annotations

import platform
import struct

__all__ = ["DENIED_SYSCALLS", "filter_program", "supported"]

# Kernel debugging and escape: tracing, other processes' memory, namespaces, mounts, keyrings, BPF, modules,
# kernel-side I/O rings (they bypass this filter), handle-based opens (escape a bind mount), clock and reboot.
DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "lookup_dcookie",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "personality",
    "memfd_secret",
    "iopl",
    "ioperm",
    "uselib",
)

# (audit arch, {name: number}) per machine; names a table lacks do not exist on that architecture.
_X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "move_mount": 429, "open_tree": 428,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 272,
    "setns": 308, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300, "lookup_dcookie": 212,
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "quotactl": 179, "syslog": 103, "vhangup": 153,
    "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "personality": 135,
    "memfd_secret": 447, "iopl": 172, "ioperm": 173, "uselib": 134,
    "clone": 56, "clone3": 435, "ioctl": 16, "socket": 41, "prlimit64": 302,
}  # fmt: skip
_AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "move_mount": 429, "open_tree": 428,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 97,
    "setns": 268, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
    "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "fanotify_init": 262, "lookup_dcookie": 18,
    "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "quotactl": 60, "syslog": 116, "vhangup": 58,
    "settimeofday": 170, "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266, "personality": 92,
    "memfd_secret": 447,
    "clone": 220, "clone3": 435, "ioctl": 29, "socket": 198, "prlimit64": 261,
}  # fmt: skip
_ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}
_ARCHES["amd64"] = _ARCHES["x86_64"]
_ARCHES["arm64"] = _ARCHES["aarch64"]

# classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h)
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_X32_SYSCALL_BIT = 0x40000000
_AF_UNIX = 1
_TIOCSTI = 0x5412  # push characters into the terminal's input: a classic sandbox escape through a shared tty
_CLONE_NEW_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
# offsets in struct seccomp_data: nr, arch, then args[i] (the low 32 bits first on little-endian machines)
_NR, _ARCH = 0, 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


def supported(machine: str | None = None) -> bool:
    """Whether a filter can be built for this machine's architecture."""
    return (machine or platform.machine()) in _ARCHES


def filter_program(machine: str | None = None) -> bytes:
    """The filter for `machine` (default: this one) as packed `struct sock_filter` entries."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise ValueError(f"no seccomp filter for architecture {machine!r}; known: {sorted(_ARCHES)}")
    audit_arch, numbers = _ARCHES[machine]
    # Layout: checks jump forward to one of the four returns at the end (allow, EPERM, ENOSYS, kill).
    body: list[tuple[int, int | str, int | str, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, 0, "kill", audit_arch),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if machine in ("x86_64", "amd64"):
        body.append((_JGE_K, "kill", 0, _X32_SYSCALL_BIT))
    body += [(_JEQ_K, "eperm", 0, numbers[name]) for name in DENIED_SYSCALLS if name in numbers]
    body.append((_JEQ_K, "enosys", 0, numbers["clone3"]))
    # Argument checks: each loads one argument, tests it, and reloads the number for the next check.
    for name, arg, test, value, on_match in (
        ("clone", 0, _JSET_K, _CLONE_NEW_NAMESPACES, "eperm"),
        ("ioctl", 1, _JEQ_K, _TIOCSTI, "eperm"),
        ("socket", 0, _JEQ_K, _AF_UNIX, "allow"),  # only local sockets: no INET, netlink, packet or vsock
        ("prlimit64", 0, _JEQ_K, 0, "allow"),  # its own limits only: lowering the judge's would break its run
    ):
        body.append((_JEQ_K, 0, 3, numbers[name]))
        body.append((_LD_W_ABS, 0, 0, _arg_low(arg)))
        body.append((test, on_match, "eperm" if on_match == "allow" else "allow", value))
        body.append((_LD_W_ABS, 0, 0, _NR))
    body.append((_RET_K, 0, 0, _RET_ALLOW))
    returns = {"allow": len(body) - 1}
    for label, value in (("eperm", _RET_ERRNO | _EPERM), ("enosys", _RET_ERRNO | _ENOSYS), ("kill", _RET_KILL_PROCESS)):
        returns[label] = len(body)
        body.append((_RET_K, 0, 0, value))
    packed = []
    for position, (code, jt, jf, k) in enumerate(body):
        offsets = [returns[j] - position - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= o <= 255 for o in offsets):
            raise AssertionError(f"seccomp jump out of range at instruction {position}")  # a layout bug, not input
        packed.append(struct.pack("=HBBI", code, offsets[0], offsets[1], k))
    return b"".join(packed)
