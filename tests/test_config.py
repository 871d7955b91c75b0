"""Config validation: every error names the key that is wrong."""

from pathlib import Path

import pytest

from schemas.config import EXECUTION_KEYS, ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]
BASE = {"input": {"path": "problems.jsonl"}, "policy": {"model": "models/tiny-arith"}}


def test_defaults_and_overrides():
    config = config_from_dict(BASE, ["search.num_solutions=7", r'sampling.stop=["\n"]', "run.seed=3"])
    assert config.search.num_solutions == 7
    assert config.sampling.stop == ["\n"]
    assert config.run.seed == 3
    assert config.sampling.temperature == 0.8


def test_hash_changes_with_config_and_is_stable():
    a = config_from_dict(BASE)
    b = config_from_dict(BASE)
    c = config_from_dict(BASE, ["run.seed=1"])
    assert a.config_hash() == b.config_hash() != c.config_hash()


# A valid other value for every execution-only key (the test below fails when a key is listed without one).
EXECUTION_CHANGES = {
    "resources": ["resources.accelerator=type:nvidia-l4;count:1", "resources.share_engine_across_processes=true"],
    "cache": ["cache.enabled=false", "cache.dir=/elsewhere"],
    "policy.base_url": ["policy.base_url=http://10.0.0.1:8000/v1"],
    "policy.api_key_env": ["policy.api_key_env=OTHER_KEY"],
    "policy.request_timeout_s": ["policy.request_timeout_s=5"],
    "policy.max_retries": ["policy.max_retries=9"],
    "policy.backoff_s": ["policy.backoff_s=4"],
    "policy.threads": ["policy.threads=16"],
    "policy.gpu_memory_utilization": ["policy.gpu_memory_utilization=0.5"],
    "policy.kv_cache_memory_bytes": ["policy.kv_cache_memory_bytes=null"],
    "policy.max_num_seqs": ["policy.max_num_seqs=32"],
    "policy.enforce_eager": ["policy.enforce_eager=false"],
    "search.problems_per_batch": ["search.problems_per_batch=7"],
    "search.max_sequences_per_call": ["search.max_sequences_per_call=64"],
    "search.sequences_in_flight": ["search.sequences_in_flight=0"],
    "search.driver": ["search.driver=rounds"],
}
EXECUTION_CHANGES |= {
    f"judge.engine.{key.split('.', 1)[1]}": [f"judge.engine.{o.split('.', 1)[1]}" for o in overrides]
    for key, overrides in EXECUTION_CHANGES.items()
    if key.startswith("policy.")
}


@pytest.mark.parametrize("key", EXECUTION_KEYS)
def test_an_execution_key_leaves_the_hash_unchanged(key):
    base = config_from_dict(BASE)
    node = base.to_dict()
    for part in key.split("."):
        node = node[part]  # every listed key exists in the config
    changed = config_from_dict(BASE, EXECUTION_CHANGES[key])
    assert changed.to_dict() != base.to_dict()
    assert changed.config_hash() == base.config_hash()


@pytest.mark.parametrize(
    "override",
    [
        "sampling.temperature=0.7",
        "search.completions_per_step=3",
        "policy.model=other-model",
        "policy.max_model_len=512",
        "judge.engine.model=a-judge",
        "label.hard_rule=threshold",
        "input.path=other.jsonl",
        "output.num_shards=4",
    ],
)
def test_a_data_key_changes_the_hash(override):
    assert config_from_dict(BASE, [override]).config_hash() != config_from_dict(BASE).config_hash()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.method=beam"], r"^search\.method: 'beam' is not one of mc, omegaprm$"),
        (["search.method=sample"], r"^search\.method: 'sample' \(solutions only\) is refused: .* use mc or omegaprm"),
        (["search.num_solutions=0"], r"^search\.num_solutions: must be positive"),
        (["search.sequences_in_flight=-1"], r"^search\.sequences_in_flight: must be a whole number >= 0"),
        (["search.driver=async"], r"^search\.driver: 'async' is not one of requests, rounds"),
        (["sampling.max_tokens=lots"], r"^sampling\.max_tokens: expected an integer"),
        (["sampling.temperature=-1"], r"^sampling\.temperature: must be >= 0"),
        (["policy.engine=llamacpp"], r"^policy\.engine: 'llamacpp'"),
        (["policy.prompt_template=hello"], r"^policy\.prompt_template: must contain"),
        (["policy.enable_prefix_caching=maybe"], r"^policy\.enable_prefix_caching: expected true/false"),
        (["input.fields.question="], r"^input\.fields\.question: expected a string"),
        (["input.fields.question=''"], r"^input\.fields\.question: a column name is required"),
        (["input.answer_format=latex"], r"^input\.answer_format:"),
        (["output.num_shards=-2"], r"^output\.num_shards: must be positive"),
        (["steps.splitter=regex"], r"^steps\.pattern: the regex splitter needs a pattern"),
        (["search.typo=1"], r"^search\.typo: unknown key"),
        (["label.threshold=1.5", "label.hard_rule=threshold"], r"^label\.threshold: must be in"),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(BASE, overrides)


def test_missing_required_values():
    with pytest.raises(ConfigError, match=r"^input\.path: an input path"):
        config_from_dict({"policy": {"model": "m"}})
    with pytest.raises(ConfigError, match=r"^policy\.model: a model path or name is required"):
        config_from_dict({"input": {"path": "x.jsonl"}})
    with pytest.raises(ConfigError, match=r"^policy\.base_url:"):
        config_from_dict(BASE, ["policy.engine=openai"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config_from_dict(BASE, ["search.num_solutions"])
    with pytest.raises(ConfigError, match=r"^run\.seed\.x: seed is not a mapping"):
        config_from_dict(BASE, ["run.seed=1", "run.seed.x=2"])


def test_every_shipped_preset_loads(tmp_path):
    for preset in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(preset, [f"input.path={tmp_path / 'x.jsonl'}"])
        assert config.policy.model


def test_yaml_errors_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.yaml")


def test_consensus_preset_votes_mc_with_the_arithmetic_verifier():
    from transforms.filter import consensus_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "consensus.yaml")
    assert config.filters.consensus.enabled and config.filters.consensus.annotators == ["mc", "arithmetic"]
    assert "arithmetic" in config.annotators and not config.judge.enabled  # the tiny judge is an option
    voting = consensus_config(config)
    assert voting is not None and voting.abstaining == ("arithmetic",) and voting.veto == ()
    with_judge = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "consensus.yaml",
        [
            "judge.enabled=true",
            "filters.consensus.annotators=[mc, arithmetic, judge]",
            "filters.consensus.rule=majority",
        ],
    )
    assert consensus_config(with_judge).abstaining == ("arithmetic",)  # the judge's None stays undetermined
