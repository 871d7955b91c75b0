"""StepForge's command line: `stepforge` (installed) or `python run.py` (a checkout); see `commands.cli`."""

__version__ = "0.1.0"  # the one version: pyproject.toml reads it, `stepforge --version` prints it
