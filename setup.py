"""A shim for Beam's `--setup_file ./setup.py` (Dataflow): the project, its packages and version are in
pyproject.toml, which setuptools reads from here too; Beam builds the sdist and installs it on every worker.

Workers of the custom container already have the dependencies (deploy/Dockerfile); this ships the code.
"""

from setuptools import setup

setup()
