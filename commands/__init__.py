"""StepForge's command line, `stepforge` (installed) or `python run.py` (a checkout), see `commands.cli`, and the
commands that are not Beam graphs: export, import, publish, report, evaluate, verify, train, estimate.

`pipelines/` holds the Beam graphs (synthesize, annotate) and what every run writes (manifest, dataset card).
"""

__version__ = "0.1.0"  # the one version: pyproject.toml reads it, `stepforge --version` prints it
