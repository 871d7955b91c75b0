#!/usr/bin/env python3
"""Will the Dataflow workers of the image `deploy/Dockerfile` builds see apache_beam, vLLM and StepForge?

    python deploy/check_boot.py [--dockerfile deploy/Dockerfile] [--build]

Beam's boot (the image's entrypoint) starts every SDK worker with the `python` on the image's PATH, in a fresh
virtual environment made by `python -m venv --system-site-packages` unless RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT
is set (apache/beam sdks/python/container/boot.go, `setupVenv`). Such a venv sees its *base* interpreter's
site-packages, never those of another venv: packages installed into a venv the image made are invisible to it.

With `--build` and a working container tool, the image is built and that boot step is run inside it. Without one,
the Dockerfile is read (which interpreter each `pip install` fills, what `python` is on PATH, whether boot makes a
venv) and the layout is imitated on this machine:
- a stand-in for the image's system Python: a copy of this machine's base interpreter with an empty site-packages;
- each venv the Dockerfile makes, made from that stand-in;
- `pip install -r requirements*.txt` into an interpreter: a `.pth` file in its site-packages that points at the
  site-packages holding this machine's apache_beam and vllm (the same packages, without a download);
- `pip install .` (the project): the real install, `pip install --no-deps --target <site-packages> .`;
- then boot's step itself: the `python` on PATH, and from it `-m venv --system-site-packages` unless the variable
  is set; in that interpreter (isolated, outside the checkout) apache_beam, vllm and every package in
  pyproject.toml must be importable.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEM = "system"  # the image's own interpreter, as opposed to a venv the Dockerfile makes
DEFAULT_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
DEPENDENCIES = ("apache_beam", "vllm")


@dataclass
class Install:
    target: str  # SYSTEM or the venv folder whose interpreter runs the install
    kind: str  # "requirements" or "project"
    spec: str


@dataclass
class Layout:
    """What the Dockerfile does with Python, as far as Beam's boot cares."""

    base_image: str = ""
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    venvs: list[str] = field(default_factory=list)
    installs: list[Install] = field(default_factory=list)

    @property
    def base_has_beam(self) -> bool:
        """Beam's SDK images carry apache_beam in their system Python."""
        return bool(re.match(r"(docker\.io/)?apache/beam_python[\d.]+_sdk", self.base_image))

    @property
    def boot_makes_venv(self) -> bool:
        return not self.env.get("RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT")

    def interpreter_of(self, command: str) -> str:
        """Which interpreter a bare `python`/`pip` (or an explicit `/venv/bin/python`) runs: SYSTEM or a venv."""
        for venv in self.venvs:
            if command.startswith(venv.rstrip("/") + "/bin/"):
                return venv
        if "/" in command:
            return SYSTEM
        for entry in self.env.get("PATH", DEFAULT_PATH).split(":"):
            for venv in self.venvs:
                if entry.rstrip("/") == venv.rstrip("/") + "/bin":
                    return venv
            if entry in ("/usr/local/bin", "/usr/bin", "/bin"):
                return SYSTEM
        return SYSTEM


def _logical_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _expand(value: str, env: dict[str, str], args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), args.get(m.group(1), "")), value)


def parse_dockerfile(text: str) -> Layout:
    """The final stage's Python layout: base image, ENV, venvs made, and where each pip install goes."""
    args: dict[str, str] = {}
    layout = Layout()
    for line in _logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG":
            name, _, default = rest.partition("=")
            args.setdefault(name.strip(), default.strip())
        elif instruction == "FROM":
            image = _expand(rest.split()[0], {}, args)
            layout = Layout(base_image=image)  # a new stage: only the last one is the image
        elif instruction == "ENV":
            pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', rest) or [tuple(rest.split(None, 1))]
            for name, value in pairs:
                layout.env[name] = _expand(value.strip('"'), layout.env, args)
        elif instruction == "RUN":
            for command in re.split(r"&&|;|\|\|", rest):
                _read_run(shlex.split(command), layout)
    return layout


def _read_run(words: list[str], layout: Layout) -> None:
    if not words:
        return
    if "-m" in words and "venv" in words[words.index("-m") + 1 : words.index("-m") + 2]:
        layout.venvs.append(next(w for w in words[words.index("-m") + 2 :] if not w.startswith("-")))
        return
    if "install" not in words:
        return
    if words[0].endswith(("pip", "pip3")) or "pip" in words[:3] and "-m" in words[:3]:
        target = layout.interpreter_of(words[0])
        options = words[words.index("install") + 1 :]
        for index, word in enumerate(options):
            if word in ("-r", "--requirement"):
                layout.installs.append(Install(target, "requirements", options[index + 1]))
            elif not word.startswith("-") and (word in (".", "./") or word.startswith(("/", "./"))):
                if index == 0 or options[index - 1] not in ("-r", "--requirement", "-c", "--target"):
                    layout.installs.append(Install(target, "project", word))


# ---------------------------------------------------------------- the imitation


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def make_system_python(root: Path) -> Path:
    """A stand-in for the image's system Python: this machine's base interpreter, copied, with an empty
    site-packages (the standard library is linked in). Returns its `bin/python`."""
    base = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    binary = Path(os.path.realpath(sys._base_executable))  # noqa: SLF001 - the interpreter a venv is made from
    (root / "bin").mkdir(parents=True)
    shutil.copy2(binary, root / "bin" / version)  # a copy: Python finds its prefix from where its binary lies
    (root / "bin" / "python").symlink_to(version)
    (root / "lib").mkdir()
    for library in (base / "lib").glob("libpython*"):
        (root / "lib" / library.name).symlink_to(library)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    (root / "lib" / version).mkdir()
    for entry in stdlib.iterdir():
        if entry.name != "site-packages":
            (root / "lib" / version / entry.name).symlink_to(entry)
    _site_packages(root).mkdir()
    return root / "bin" / "python"


def dependencies_site() -> Path:
    """The site-packages that holds this machine's apache_beam (and vllm): what the image's requirements install."""
    spec = importlib.util.find_spec("apache_beam")
    if spec is None or spec.origin is None:
        raise RuntimeError("apache_beam is not installed here, so the image's requirements cannot be imitated")
    return Path(spec.origin).resolve().parents[1]


def project_packages(repo: Path = REPO) -> list[str]:
    """The packages pyproject.toml installs (the project's own import names)."""
    return tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def build_context(repo: Path, destination: Path) -> Path:
    """Copy what `docker build` would send: the checkout minus `.dockerignore`'s patterns (top-level names and
    `**/name`), so the project install sees the image's files and leaves no build folder in the checkout."""
    ignore_file = repo / ".dockerignore"
    lines = ignore_file.read_text().splitlines() if ignore_file.is_file() else []
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def ignored(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(repo)
        out = set()
        for name in names:
            path = (relative / name).as_posix()
            for pattern in patterns:
                if fnmatch.fnmatch(path, pattern) or (pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])):
                    out.add(name)
        return out

    shutil.copytree(repo, destination, ignore=ignored, symlinks=True)
    return destination


def imitate(layout: Layout, work: Path, repo: Path = REPO, boot_makes_venv: bool | None = None) -> dict[str, object]:
    """Build the layout under `work`, run boot's step, and report which modules the worker's interpreter sees.
    `boot_makes_venv` overrides what the Dockerfile's RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT says."""
    system = make_system_python(work / "system")
    prefixes: dict[str, Path] = {SYSTEM: work / "system"}
    for index, venv in enumerate(layout.venvs):
        prefixes[venv] = work / f"venv{index}"
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(prefixes[venv])], check=True)
    deps = dependencies_site()
    context = build_context(repo, work / "context")
    if layout.base_has_beam:
        (_site_packages(prefixes[SYSTEM]) / "beam_base_image.pth").write_text(f"{deps}\n")
    for install in layout.installs:
        site = _site_packages(prefixes[install.target])
        if install.kind == "requirements":
            (site / "image_requirements.pth").write_text(f"{deps}\n")  # the same packages, no download
        else:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                 "--target", str(site), str(context)],
                check=True, cwd=work,
            )  # fmt: skip
    python = prefixes[layout.interpreter_of("python")] / "bin" / "python"
    boot_venv = layout.boot_makes_venv if boot_makes_venv is None else boot_makes_venv
    if boot_venv:  # boot.go setupVenv: `python -m venv --system-site-packages DIR`
        subprocess.run([str(python), "-m", "venv", "--system-site-packages", "--without-pip", str(work / "boot")])
        python = work / "boot" / "bin" / "python"
    modules = [*DEPENDENCIES, *project_packages(repo), "commands.cli"]
    probe = (
        "import importlib.util, json\n"
        "def seen(name):\n"
        "    try:\n"
        "        return importlib.util.find_spec(name) is not None\n"
        "    except ModuleNotFoundError:  # its parent package is missing\n"
        "        return False\n"
        f"print(json.dumps({{m: seen(m) for m in {modules!r}}}))"
    )
    done = subprocess.run(
        [str(python), "-I", "-c", probe], cwd=work, capture_output=True, text=True, env={"PATH": DEFAULT_PATH}
    )
    if done.returncode != 0:
        raise RuntimeError(f"the worker's interpreter failed: {done.stderr[-2000:]}")
    visible = json.loads(done.stdout)
    return {
        "base_image": layout.base_image,
        "installs": [f"{i.kind} {i.spec} -> {i.target}" for i in layout.installs],
        "worker_python": layout.interpreter_of("python"),
        "boot_makes_venv": boot_venv,
        "visible": visible,
        "ok": all(visible.values()),
    }


def check_dockerfile(dockerfile: Path, repo: Path = REPO, boot_makes_venv: bool | None = None) -> dict[str, object]:
    """Imitate the Dockerfile's layout in a temporary folder (see the module doc)."""
    layout = parse_dockerfile(dockerfile.read_text())
    with tempfile.TemporaryDirectory(prefix="stepforge-boot-") as work:
        return imitate(layout, Path(work), repo, boot_makes_venv)


def container_tool() -> str | None:
    """A container tool that can build here (its daemon answers), if any."""
    for tool in ("docker", "podman"):
        if shutil.which(tool) and subprocess.run([tool, "info"], capture_output=True).returncode == 0:
            return tool
    return None


BOOT_IN_IMAGE = (
    'if [ -z "$RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT" ]; then python -m venv --system-site-packages /tmp/boot '
    "&& P=/tmp/boot/bin/python; else P=python; fi; cd /tmp && $P -I -c "
    "'import apache_beam, vllm, commands.cli, pipelines, prm; print(\"ok\")'"
)


def build_and_check(tool: str, dockerfile: Path, repo: Path = REPO) -> dict[str, object]:
    """Build the image and run boot's venv step inside it (not run where this was written: no daemon there)."""
    tag = "stepforge-boot-check:latest"
    subprocess.run([tool, "build", "-f", str(dockerfile), "-t", tag, str(repo)], check=True)
    done = subprocess.run(
        [tool, "run", "--rm", "--entrypoint", "sh", tag, "-c", BOOT_IN_IMAGE], capture_output=True, text=True
    )
    return {"image": tag, "output": done.stdout + done.stderr, "ok": done.returncode == 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dockerfile", type=Path, default=REPO / "deploy" / "Dockerfile")
    parser.add_argument("--build", action="store_true", help="build the image when a container tool can")
    parser.add_argument(
        "--boot-venv",
        action="store_true",
        help="imitate boot's per-worker venv even where the Dockerfile sets RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT",
    )
    args = parser.parse_args(argv)
    tool = container_tool() if args.build else None
    if tool:
        result = build_and_check(tool, args.dockerfile)
    else:
        result = check_dockerfile(args.dockerfile, boot_makes_venv=True if args.boot_venv else None)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
