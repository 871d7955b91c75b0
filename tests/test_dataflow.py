"""The Dataflow shape of the pipeline, checked without a cloud: hints, shuffles, options, packaging, container."""

import re
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, WorkerOptions

from pipelines.synthesize import build, pipeline_options
from schemas.config import ConfigError, config_from_dict

REPO = Path(__file__).resolve().parents[1]
ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"


def built(**sections):
    config = config_from_dict(
        {"input": {"path": "/tmp/in.jsonl"}, "policy": {"model": "Qwen/Qwen2.5-Math-7B"}, **sections}
    )
    pipeline = beam.Pipeline(runner="FnApiRunner")
    build(pipeline, config, "gs://bucket/out/schema_v1/cfg_x", "gs://bucket/out/_cache")
    return pipeline.to_runner_api()


def hints(proto):
    out = {}
    for transform in proto.components.transforms.values():
        env = proto.components.environments.get(transform.environment_id)
        if env is not None and env.resource_hints:
            out[transform.unique_name] = dict(env.resource_hints)
    return out


def test_only_the_generation_steps_ask_for_a_gpu():
    got = hints(built(resources={"accelerator": ACCELERATOR}, judge={"enabled": True}))
    assert any("Generate and search" in name for name in got), "the search's generation step carries the hint"
    assert any("Critique paths" in name for name in got), "and so does the judge's"
    assert all("Generate and search" in name or "Critique paths" in name for name in got)
    assert all(h["beam:resources:accelerator:v1"] == ACCELERATOR.encode() for h in got.values())
    assert hints(built()) == {}


def test_the_gpu_machine_type_rides_in_the_hint_of_the_generation_steps_only():
    resources = {"accelerator": ACCELERATOR, "machine_type": "g2-standard-8"}
    got = hints(built(resources=resources, judge={"enabled": True}))
    assert {h["beam:resources:accelerator:v1"] for h in got.values()} == {
        f"{ACCELERATOR};machine_type:g2-standard-8".encode()
    }
    with pytest.raises(ConfigError, match=r"^resources\.machine_type: only with resources\.accelerator"):
        built(resources={"machine_type": "g2-standard-8"})
    with pytest.raises(ConfigError, match="already names a machine_type"):
        built(resources={"accelerator": f"{ACCELERATOR};machine_type:g2-standard-4", "machine_type": "g2-standard-8"})


def test_shuffles_surround_generation():
    names = [t.unique_name for t in built(judge={"enabled": True}).components.transforms.values()]
    assert "Search/Batch problems/Group batches" in names  # a shuffle before the GPU step
    assert any(n.startswith("Search/Checkpoint evidence") for n in names)  # and one right after it
    assert "Judge/Batch for the judge/Group batches" in names  # the same around the judge's
    assert any(n.startswith("Judge/Checkpoint critiques") for n in names)


def test_dataflow_options_parse():
    options = pipeline_options(
        [
            "--runner=DataflowRunner",
            "--project=p",
            "--region=us-central1",
            "--temp_location=gs://b/tmp",
            "--sdk_container_image=us-docker.pkg.dev/p/r/stepforge:1",
            "--sdk_location=container",
            "--setup_file=./setup.py",
            "--machine_type=g2-standard-8",
            "--disk_size_gb=200",
            "--experiments=use_runner_v2",
            "--max_num_workers=8",
            "--number_of_worker_harness_threads=1",
        ]
    )
    assert options.view_as(GoogleCloudOptions).project == "p"
    assert options.view_as(WorkerOptions).sdk_container_image.endswith("stepforge:1")
    assert options.view_as(SetupOptions).setup_file == "./setup.py"
    assert pipeline_options([]).get_all_options()["runner"] == "FnApiRunner"


def check_boot():
    """deploy/check_boot.py, a script beside the Dockerfile (deploy/ is no package: workers never import it)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("check_boot", REPO / "deploy" / "check_boot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_boot"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def package_folders() -> set[str]:
    return {
        str(p.parent.relative_to(REPO)).replace("/", ".")
        for p in REPO.glob("*/**/__init__.py")
        if not str(p.relative_to(REPO)).startswith(("tests", "bench", ".venv", "models", "build"))
    }


def test_the_package_list_ships_every_package():
    listed = set(check_boot().project_packages())
    assert package_folders() <= listed, package_folders() - listed
    assert {"prm", "commands"} <= listed


def test_beams_setup_file_build_holds_every_package(tmp_path):
    # What --setup_file=./setup.py does on the launcher: Beam's stager builds an sdist of the project.
    import tarfile

    from apache_beam.runners.portability.stager import Stager

    context = check_boot().build_context(REPO, tmp_path / "context")
    sdist = Stager._build_setup_package(str(context / "setup.py"), str(tmp_path / "dist"))
    with tarfile.open(sdist) as archive:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in archive.getnames()}
    for package in package_folders():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package


def test_container_recipe_matches_the_launcher():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    beam_pin = re.search(r"apache-beam\[[^\]]*\]==([\d.]+)", (REPO / "requirements-gpu.txt").read_text()).group(1)
    assert f"BEAM_VERSION={beam_pin}" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "requirements-gpu.txt" in dockerfile
    assert re.search(r"apt-get install[^\n]*\bbubblewrap\b", dockerfile)  # the code sandbox's isolation
    assert beam.__version__ == beam_pin


# The layout the image had: everything in a venv the image made, which Beam's boot venv cannot see.
OLD_LAYOUT = """
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
RUN apt-get update && apt-get install -y python3.11 python3.11-venv \\
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements-gpu.txt .
RUN pip install --upgrade pip && pip install -r requirements-gpu.txt
COPY . .
RUN pip install --no-deps .
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
"""


def test_the_dockerfile_is_read_as_boot_sees_it():
    parse_dockerfile, SYSTEM = check_boot().parse_dockerfile, check_boot().SYSTEM
    old = parse_dockerfile(OLD_LAYOUT)
    assert old.venvs == ["/opt/venv"] and old.interpreter_of("python") == "/opt/venv" and old.boot_makes_venv
    assert {(i.kind, i.target) for i in old.installs} == {("requirements", "/opt/venv"), ("project", "/opt/venv")}
    new = parse_dockerfile((REPO / "deploy" / "Dockerfile").read_text())
    assert new.base_has_beam and new.venvs == [] and new.interpreter_of("python") == SYSTEM
    assert {(i.kind, i.target) for i in new.installs} == {("requirements", SYSTEM), ("project", SYSTEM)}
    assert not new.boot_makes_venv  # RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1


def test_the_workers_see_beam_vllm_and_the_project(tmp_path):
    pytest.importorskip("vllm")
    check_dockerfile = check_boot().check_dockerfile
    dockerfile = REPO / "deploy" / "Dockerfile"
    # Both ways boot may start a worker: in the image's Python (the variable set) or in a venv made from it.
    for boot_venv in (None, True):
        result = check_dockerfile(dockerfile, boot_makes_venv=boot_venv)
        assert result["ok"], result["visible"]


def test_the_old_venv_layout_hides_everything_from_the_workers(tmp_path):
    pytest.importorskip("vllm")
    check_dockerfile = check_boot().check_dockerfile
    old = tmp_path / "Dockerfile"
    old.write_text(OLD_LAYOUT)
    result = check_dockerfile(old)
    assert not result["ok"] and not result["visible"]["apache_beam"] and not result["visible"]["vllm"]
    # The other documented fix (Beam 2.48+): keep the venv, tell boot to run in it.
    old.write_text(OLD_LAYOUT.replace("ENV PATH=", "ENV RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 PATH="))
    assert check_dockerfile(old)["ok"]
