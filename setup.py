"""Packages StepForge's top-level packages for Beam workers: `--setup_file ./setup.py` (Dataflow).

Workers of a custom container already have the dependencies (deploy/Dockerfile); this ships the code.
"""

from setuptools import setup

setup(
    name="stepforge",
    version="0.1.0",
    description="Step-level supervision (PRM training data) synthesis on Apache Beam",
    packages=[
        "annotators",
        "annotators.verifiers",
        "commands",
        "commands.report",
        "domains",
        "engines",
        "pipelines",
        "prm",
        "schemas",
        "schemas.formats",
        "storage",
        "transforms",
    ],
    python_requires=">=3.11",
)
