"""The installable command line: `stepforge` (commands.cli) and its `run.py` shim, the package metadata."""

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import commands
from commands import cli

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("apache_beam", "matplotlib", "torch", "vllm", "pyarrow", "transformers", "datasets")


def loaded_after(argv: list[str], env: dict[str, str] | None = None) -> dict:
    """Run the CLI with `argv` in a fresh interpreter; return which heavy modules it imported and its env."""
    wrapper = (
        "import json, os, sys\n"
        "from commands.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('@@' + json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules],"
        " 'vllm_level': os.environ.get('VLLM_LOGGING_LEVEL')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.rsplit("@@", 1)[1])


@pytest.mark.parametrize("argv", [["--help"], ["publish", "--help"], ["estimate", "--help"], ["--version"]])
def test_help_imports_no_heavy_library(argv):
    loaded = loaded_after(argv)["loaded"]
    # publish's own module needs pyarrow (the card reads shards); nothing else of the heavy set, ever, for --help.
    allowed = {"pyarrow"} if argv[0] == "publish" else set()
    assert set(loaded) <= allowed, loaded


def test_run_py_and_the_console_script_answer_alike():
    shim = subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    module = subprocess.run(
        [sys.executable, "-m", "commands.cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert shim.returncode == module.returncode == 0 and shim.stdout == module.stdout
    for name in ("synthesize", "annotate", "demo", "estimate", "publish", "export", "import", "train"):
        assert name in shim.stdout
    version = subprocess.run(
        [sys.executable, "run.py", "--version"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"stepforge {commands.__version__}"


def test_vllm_logs_are_quiet_unless_verbose():
    # vLLM reads VLLM_LOGGING_LEVEL when imported (vllm/envs.py); the CLI sets it before any command imports vLLM.
    env = {k: v for k, v in os.environ.items() if k != "VLLM_LOGGING_LEVEL"}
    quiet = loaded_after(["estimate", "--config", "configs/demo.yaml", "--problems", "1"], env)
    verbose = loaded_after(["-v", "estimate", "--config", "configs/demo.yaml", "--problems", "1"], env)
    assert quiet["vllm_level"] == "WARNING" and verbose["vllm_level"] is None
    assert set(quiet["loaded"]) <= {
        "pyarrow"
    }  # arithmetic (annotators.omegaprm holds pyarrow schemas): no Beam, no engine


def test_every_lazy_command_lists_its_modules_own_help_line():
    for name, (module, register, help_line) in cli.LAZY_COMMANDS.items():
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        getattr(__import__(module, fromlist=[register]), register)(sub)
        real = {action.dest: action.help for action in sub._choices_actions}
        assert real[name] == help_line, name


def test_the_chosen_command_is_the_first_word_that_is_no_option():
    assert cli._command_of(["-v", "publish", "RUN", "--version", "v2"]) == "publish"
    assert cli._command_of(["--help"]) is None
    args, _ = cli.build_parser("publish").parse_known_args(["publish", "RUN", "--repo", "a/b", "--version", "v2"])
    assert (args.command, args.version) == ("publish", "v2")  # publish's --version is its own, not the CLI's


def requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_project_metadata_agrees_with_the_requirements_files():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    meta = project["project"]
    assert meta["name"] == "stepforge" and meta["requires-python"] == ">=3.11"
    assert meta["scripts"] == {"stepforge": "commands.cli:main"}
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "commands.__version__"}
    engine = re.compile(r"^vllm(-cpu)?==")
    cpu, gpu = requirement_lines(REPO / "requirements.txt"), requirement_lines(REPO / "requirements-gpu.txt")
    assert sorted(meta["dependencies"]) == sorted(r for r in cpu if not engine.match(r))
    assert sorted(meta["dependencies"]) == sorted(r for r in gpu if not engine.match(r))
    extras = meta["optional-dependencies"]
    assert extras["cpu"] == [r for r in cpu if engine.match(r)] and extras["gpu"] == [r for r in gpu if engine.match(r)]
    assert sorted(extras["test"]) == sorted(requirement_lines(REPO / "requirements-test.txt"))
    packages = project["tool"]["setuptools"]["packages"]
    assert {"prm", "commands"} <= set(packages)


def test_the_test_tools_stay_out_of_the_runtime_requirements():
    for name in ("requirements.txt", "requirements-gpu.txt"):
        pins = {re.split(r"[=<>\[]", line)[0] for line in requirement_lines(REPO / name)}
        assert not pins & {"pytest", "ruff", "trl"}, name
