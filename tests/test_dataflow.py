"""The Dataflow shape of the pipeline, checked without a cloud: hints, shuffles, options, packaging, container."""

import re
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, WorkerOptions

from pipelines.synthesize import build, pipeline_options
from schemas.config import config_from_dict

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


def test_setup_py_ships_every_package():
    text = (REPO / "setup.py").read_text()
    listed = set(re.findall(r'"([a-z_.]+)",', text))
    packages = {
        str(p.parent.relative_to(REPO)).replace("/", ".")
        for p in REPO.glob("*/**/__init__.py")
        if not str(p.relative_to(REPO)).startswith(("tests", "bench", ".venv", "models"))
    }
    assert packages <= listed, packages - listed


def test_container_recipe_matches_the_launcher():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    beam_pin = re.search(r"apache-beam\[[^\]]*\]==([\d.]+)", (REPO / "requirements-gpu.txt").read_text()).group(1)
    assert f"BEAM_VERSION={beam_pin}" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "requirements-gpu.txt" in dockerfile
    assert re.search(r"apt-get install[^\n]*\bbubblewrap\b", dockerfile)  # the code sandbox's isolation
    assert beam.__version__ == beam_pin
