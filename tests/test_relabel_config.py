"""`annotate --from RUN`: the relabel's config starts from the parent run's own, so only real differences refuse."""

from pathlib import Path

import pytest

from pipelines.annotate import relabel_config
from schemas.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"


@pytest.fixture
def demo_parent(tmp_path: Path) -> dict:
    """A demo run's manifest: configs/demo.yaml with the input path the demo command wrote its problems to."""
    config = load_config(DEMO, [f"input.path={tmp_path}/out/demo/input/problems.jsonl"])
    return {"config": config.to_dict(), "config_hash": config.config_hash()}


def test_the_demo_preset_relabels_a_demo_run(demo_parent: dict):
    # The reported command: `annotate --from RUN --config configs/demo.yaml --set label.hard_rule=threshold`.
    config = relabel_config(demo_parent, str(DEMO), ["label.hard_rule=threshold"])
    assert config.label.hard_rule == "threshold"
    assert config.input.path == demo_parent["config"]["input"]["path"]  # the evidence's own input
    assert config.config_hash() != demo_parent["config_hash"]


def test_without_config_the_parent_config_is_the_start(demo_parent: dict):
    same = relabel_config(demo_parent)
    assert same.to_dict() == demo_parent["config"] and same.config_hash() == demo_parent["config_hash"]
    retried = relabel_config(demo_parent, None, ["policy.max_retries=9", "search.problems_per_batch=3"])
    assert retried.config_hash() == demo_parent["config_hash"]  # execution keys are no difference


def test_input_elsewhere_is_no_difference_but_other_problems_are(demo_parent: dict, tmp_path: Path):
    moved = relabel_config(demo_parent, None, ["input.path=/elsewhere/problems.jsonl"])
    assert moved.input.path == demo_parent["config"]["input"]["path"]
    with pytest.raises(ConfigError, match=r"input differs \(input\.limit\)"):
        relabel_config(demo_parent, None, ["input.limit=3"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.completions_per_step=4"], r"search differs \(search\.completions_per_step\)"),
        (["sampling.temperature=0.5"], r"sampling differs \(sampling\.temperature\)"),
        (["policy.model=other"], r"policy differs \(policy\.model\)"),
        (["run.seed=4"], r"run\.seed differs"),
    ],
)
def test_real_generation_differences_are_refused(demo_parent: dict, overrides: list[str], message: str):
    with pytest.raises(ConfigError, match=message):
        relabel_config(demo_parent, None, overrides)


def test_a_config_file_that_changes_generation_is_refused(demo_parent: dict, tmp_path: Path):
    other = tmp_path / "other.yaml"
    other.write_text("search:\n  completions_per_step: 16\nlabel:\n  hard_rule: threshold\n")
    with pytest.raises(ConfigError, match=r"search\.completions_per_step"):
        relabel_config(demo_parent, str(other))
    labels_only = tmp_path / "labels.yaml"
    labels_only.write_text("label:\n  hard_rule: threshold\n  threshold: 0.3\n")
    # A key the file does not name keeps the parent's value, even one the parent set with --set.
    demo_parent["config"]["search"]["num_solutions"] = 2
    relabelled = relabel_config(demo_parent, str(labels_only))
    assert relabelled.label.threshold == 0.3 and relabelled.search.num_solutions == 2
    with pytest.raises(ConfigError, match=r"search\.num_solutions"):  # the preset restates 4: a real difference
        relabel_config(demo_parent, str(DEMO))
