"""The run configuration: typed dataclasses built from YAML, with errors that name the offending key.

`load_config(path, overrides)` reads YAML, applies `--set a.b=c` overrides, and validates every key; an unknown
key, a wrong type or a bad value raises `ConfigError("input.fields.question: ...")`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.coerce import ConfigError, apply_override, build, choice, positive
from schemas.records import SamplingParams

VERIFIERS = ("arithmetic", "logic", "code")


@dataclass
class RunConfig:
    seed: int = 0
    name: str = "stepforge"


@dataclass
class DatasetRef:
    """A `datasets` dataset: a hub name (with config and split) or a local folder saved with save_to_disk."""

    name: str = ""
    config: str | None = None
    split: str = "train"
    revision: str | None = None  # a hub dataset's branch, tag or commit; a run pins it to the commit sha


@dataclass
class InputConfig:
    path: str = ""  # JSONL/Parquet file or glob, local, gs:// or s3://; or a datasets folder
    format: str = "auto"  # auto | jsonl | parquet | datasets | generated
    dataset: DatasetRef = field(default_factory=DatasetRef)
    fields: dict[str, str] = field(default_factory=lambda: {"question": "question", "answer": "answer"})
    answer_format: str = "auto"  # auto | gsm8k | boxed | plain
    id_field: str | None = None  # column with a stable id; default: hash of question + answer
    domain: str = "math"
    source: str | None = None  # defaults to the file name
    max_chars: int = 20000  # question + answer size limit; longer rows are dead-lettered
    max_file_bytes: int = 2 << 30  # bytes one input file may decode to; the rest of the file is one dead letter
    limit: int | None = None
    generate: dict[str, int] = field(default_factory=lambda: {"n": 48, "seed": 0, "min_steps": 2, "max_steps": 6})

    def validate(self, key: str) -> None:
        choice(f"{key}.format", self.format, {"auto", "jsonl", "parquet", "datasets", "generated"})
        choice(f"{key}.answer_format", self.answer_format, {"auto", "gsm8k", "boxed", "plain"})
        for name in ("question", "answer"):
            if not self.fields.get(name):
                raise ConfigError(f"{key}.fields.{name}: a column name is required")
        if self.format != "generated" and not self.path and not self.dataset.name:
            raise ConfigError(f"{key}.path: an input path (or input.dataset.name) is required")
        positive(f"{key}.max_chars", self.max_chars)
        positive(f"{key}.max_file_bytes", self.max_file_bytes)


@dataclass
class EngineConfig:
    """Which engine answers generation requests, and the settings that change its outputs."""

    engine: str = "vllm"  # vllm | openai | transformers
    model: str = ""
    revision: str | None = None
    dtype: str = "bfloat16"
    max_model_len: int = 256
    enable_prefix_caching: bool = True
    enforce_eager: bool = True
    kv_cache_memory_bytes: int | None = 256 << 20
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 256
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    request_timeout_s: float = 120.0
    threads: int = 1  # torch threads on CPU
    max_retries: int = 3
    backoff_s: float = 1.0
    prompt_template: str = "{question}"  # raw prompt; `{question}` is the problem text
    chat_template: bool = False  # render with the tokenizer's chat template instead
    system_prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        choice(f"{key}.engine", self.engine, {"vllm", "openai", "transformers"})
        if not self.model:
            raise ConfigError(f"{key}.model: a model path or name is required")
        if self.engine == "openai" and not self.base_url:
            raise ConfigError(f"{key}.base_url: the openai engine needs the server's base URL")
        if "{question}" not in self.prompt_template:
            raise ConfigError(f"{key}.prompt_template: must contain {{question}}")
        positive(f"{key}.max_retries", self.max_retries)


@dataclass
class SamplingConfig:
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 96
    stop: list[str] = field(default_factory=list)

    def validate(self, key: str) -> None:
        if self.temperature < 0:
            raise ConfigError(f"{key}.temperature: must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{key}.top_p: must be in (0, 1]")
        positive(f"{key}.max_tokens", self.max_tokens)


def sampling_params(s: SamplingConfig) -> SamplingParams:
    """The engine's sampling parameters of a config section (the seed is set per request by the search)."""
    return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))


@dataclass
class StepsConfig:
    splitter: str = "auto"  # auto | double_newline | step_markers | lines | regex
    pattern: str | None = None
    max_steps: int = 64

    def validate(self, key: str) -> None:
        choice(f"{key}.splitter", self.splitter, {"auto", "double_newline", "step_markers", "lines", "regex"})
        if self.splitter == "regex" and not self.pattern:
            raise ConfigError(f"{key}.pattern: the regex splitter needs a pattern")


@dataclass
class AnswersConfig:
    truncation_policy: str = "wrong"  # wrong | grade | error

    def validate(self, key: str) -> None:
        choice(f"{key}.truncation_policy", self.truncation_policy, {"wrong", "grade", "error"})


@dataclass
class SearchConfig:
    method: str = "mc"  # mc (Math-Shepherd per-step MC) | omegaprm
    num_solutions: int = 4  # N policy samples per problem
    completions_per_step: int = 8  # k rollouts per prefix (Math-Shepherd N = 8)
    prefilter: bool = False  # skip problems whose N solutions are all right or all wrong
    # Problems whose searches share engine calls; 256 rather than 64 took the search stage from 0.65 to 0.85 of
    # raw LLM.generate throughput (bench/bench_omegaprm.py): sequential searches need many problems to fill a call.
    problems_per_batch: int = 256
    max_sequences_per_call: int = 4096
    # The driver starts a batch's searches only while the live ones ask for fewer sequences than this per round,
    # and more as they end, so calls stay full until the batch runs out (engines/driver.py); 0: all at once.
    # 4 x vLLM's default max_num_seqs: OmegaPRM k=8 on 1,000 problems in batches of 1,024 went from 172 engine calls
    # at fill 0.34 (256 per batch, all at once) to 68 at 0.56, and from 0.86 to 0.97 of raw LLM.generate throughput
    # on CPU (means of 4 and 3 runs; bench/bench_omegaprm.py --problems-per-batch --sequences-in-flight).
    # With the request-level driver more in flight fills vLLM's steps a little more (k=8: 4,034 steps at 512, 3,901 at
    # 1,024, 3,765 at 2,048, 3,733 all at once); 1,024 keeps the queue bounded for very large batches.
    sequences_in_flight: int = 1024
    # requests: each request joins the engine's running batch as its search asks for it, and a search moves on as
    # soon as its round is done | rounds: each engine call answers one round of every live search (engines/driver.py).
    # Same samples either way; OmegaPRM k=8 on 1,000 problems took 3,901 vLLM steps at fill 0.82 by requests against
    # 5,513 at 0.59 by rounds (one raw generate of the same requests: 3,236 at 0.99; bench/bench_omegaprm.py --driver).
    # On CPU a step costs about its tokens, so tokens/s came out the same; on a GPU a decode step costs about the
    # same whatever its batch, so fewer, fuller steps are what counts there.
    driver: str = "requests"
    omegaprm: dict[str, Any] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        if self.method == "sample":
            # Solutions alone give a label to no step but the last; MC would fill the rest with made-up zeros.
            raise ConfigError(
                f"{key}.method: 'sample' (solutions only) is refused: plain sampling grades only each solution's "
                "final answer, so no step but the last would have a label (the verifiers and the judge leave steps "
                "they cannot check unlabelled); use mc or omegaprm, or label existing solutions with "
                "`run.py verify RUN --annotators ...`"
            )
        choice(f"{key}.method", self.method, {"mc", "omegaprm"})
        choice(f"{key}.driver", self.driver, {"rounds", "requests"})
        for name in ("num_solutions", "completions_per_step", "problems_per_batch", "max_sequences_per_call"):
            positive(f"{key}.{name}", getattr(self, name))
        if self.sequences_in_flight < 0:  # `build` has already checked that it is an integer
            raise ConfigError(f"{key}.sequences_in_flight: must be a whole number >= 0 (0: start every search at once)")
        # The rest of search.omegaprm is checked by annotators.omegaprm.OmegaPRMConfig when the pipeline is built.
        budget = self.omegaprm.get("rollout_budget", "auto")
        if not (budget is None or budget == "auto" or (type(budget) is int and budget > 0)):
            raise ConfigError(
                f"{key}.omegaprm.rollout_budget: must be a whole number of completions per question, auto (what "
                f"search_limit searches can need, sized from the root's longest rollout) or null (no cap), got {budget!r}"
            )


@dataclass
class LabelConfig:
    hard_rule: str = "mc>0"  # mc>0 (Math-Shepherd hard estimate) | threshold
    threshold: float = 0.5  # with hard_rule=threshold: label = mc > threshold

    def validate(self, key: str) -> None:
        choice(f"{key}.hard_rule", self.hard_rule, {"mc>0", "threshold"})
        if not 0 <= self.threshold < 1:
            raise ConfigError(f"{key}.threshold: must be in [0, 1)")

    @property
    def policy_name(self) -> str:
        return "mc>0" if self.hard_rule == "mc>0" else f"mc>{self.threshold:g}"


@dataclass
class JudgeConfig:
    """The LLM judge (ProcessBench critique prompt); its engine defaults to the policy's when `engine.model` is unset."""

    enabled: bool = False
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(model=""))
    samples: int = 8  # m critiques per solution, majority vote (ProcessBench --use_voting uses 8)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7, top_p=0.8, max_tokens=512))
    parser: str = "reference"  # reference (ProcessBench's, for comparability) | robust
    template: str | None = None  # None = the ProcessBench critique prompt; needs {problem} and {tagged_response}

    def validate(self, key: str) -> None:
        choice(f"{key}.parser", self.parser, {"reference", "robust"})
        if self.template is not None and not all(f in self.template for f in ("{problem}", "{tagged_response}")):
            raise ConfigError(f"{key}.template: must contain {{problem}} and {{tagged_response}}")
        positive(f"{key}.samples", self.samples)
        self.sampling.validate(f"{key}.sampling")
        if self.enabled and self.engine.model:
            self.engine.validate(f"{key}.engine")


@dataclass
class ConsensusFilterConfig:
    enabled: bool = False
    annotators: list[str] = field(default_factory=lambda: ["mc", "judge"])
    rule: str = "all"  # all | majority
    veto: list[str] = field(default_factory=list)  # verifiers whose earlier flag drops a row

    def validate(self, key: str) -> None:
        choice(f"{key}.rule", self.rule, {"all", "majority"})
        if self.enabled and len(self.annotators) < 2:
            raise ConfigError(f"{key}.annotators: consensus needs at least two annotators")


@dataclass
class BalanceConfig:
    enabled: bool = False
    target_positive_ratio: float = 0.5

    def validate(self, key: str) -> None:
        if not 0 < self.target_positive_ratio < 1:
            raise ConfigError(f"{key}.target_positive_ratio: must be in (0, 1)")


@dataclass
class FiltersConfig:
    consensus: ConsensusFilterConfig = field(default_factory=ConsensusFilterConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)

    def validate(self, key: str) -> None:
        self.consensus.validate(f"{key}.consensus")
        self.balance.validate(f"{key}.balance")


@dataclass
class CompressionConfig:
    enabled: bool = False
    probability: float = 0.5  # HRM merges with probability 0.5 (docs/labellers.md §4)

    def validate(self, key: str) -> None:
        if not 0 <= self.probability <= 1:
            raise ConfigError(f"{key}.probability: must be in [0, 1]")


@dataclass
class AugmentConfig:
    compression: CompressionConfig = field(default_factory=CompressionConfig)

    def validate(self, key: str) -> None:
        self.compression.validate(f"{key}.compression")


@dataclass
class ProgressConfig:
    enabled: bool = True
    pav_k: int = 4  # Best-of-K prover, K≈4 (docs/labellers.md §5)
    rpe_epsilon: float = 0.8  # GenPRM Table 3: ratio >= 0.8 is best (docs/labellers.md §6.1)

    def validate(self, key: str) -> None:
        positive(f"{key}.pav_k", self.pav_k)
        if not 0 < self.rpe_epsilon <= 1:
            raise ConfigError(f"{key}.rpe_epsilon: must be in (0, 1]")


@dataclass
class ResourcesConfig:
    """Where generation runs at scale (Dataflow): the accelerator of the generation step, engine sharing."""

    accelerator: str | None = None  # e.g. "type:nvidia-l4;count:1;install-nvidia-driver" (right fitting)
    # The machine of the generation steps alone (e.g. g2-standard-8 for L4s): it rides in the accelerator hint, so
    # the CPU stages keep Dataflow's default machines instead of `--machine_type` putting the whole job on GPU VMs.
    machine_type: str | None = None
    # One engine per worker VM for every SDK process (a `vllm serve` reached over HTTP, engines/served.py):
    # true | false | "auto" (on whenever `accelerator` is set). Read it through `share_engine()`.
    share_engine_across_processes: bool | str = "auto"

    def share_engine(self) -> bool:
        """Whether the workers share one engine across SDK processes: the option, with "auto" resolved (the one
        place it is): on with an accelerator, since Dataflow runs several SDK processes on a GPU VM and each would
        otherwise start its own engine on the one GPU."""
        if self.share_engine_across_processes == "auto":
            return self.accelerator is not None
        return bool(self.share_engine_across_processes)

    def validate(self, key: str) -> None:
        if self.accelerator is not None and not self.accelerator.startswith("type:"):
            raise ConfigError(f"{key}.accelerator: expected 'type:GPU_TYPE;count:N;...', got {self.accelerator!r}")
        if self.share_engine_across_processes not in (True, False, "auto"):
            raise ConfigError(
                f"{key}.share_engine_across_processes: expected true, false or auto, got "
                f"{self.share_engine_across_processes!r}"
            )
        if self.machine_type is not None:
            if self.accelerator is None:
                raise ConfigError(f"{key}.machine_type: only with {key}.accelerator (it is the GPU step's machine)")
            if "machine_type:" in self.accelerator:
                raise ConfigError(f"{key}.machine_type: {key}.accelerator already names a machine_type")

    def accelerator_hint(self) -> str | None:
        """Dataflow's accelerator resource hint of the generation steps, with their machine type when set
        (its `machine_type:` option, https://cloud.google.com/dataflow/docs/guides/right-fitting)."""
        if self.accelerator is None or self.machine_type is None:
            return self.accelerator
        return f"{self.accelerator.rstrip(';')};machine_type:{self.machine_type}"


@dataclass
class CacheConfig:
    """The generation cache: samples keyed by content, so reruns generate only what is missing."""

    enabled: bool = True
    dir: str | None = None  # default: `_cache` beside the run's versioned folder


@dataclass
class OutputConfig:
    num_shards: int = 1
    compression: str = "zstd"
    row_group_size: int = 1000

    def validate(self, key: str) -> None:
        positive(f"{key}.num_shards", self.num_shards)
        choice(f"{key}.compression", self.compression, {"zstd", "snappy", "gzip", "none"})


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    input: InputConfig = field(default_factory=InputConfig)
    policy: EngineConfig = field(default_factory=EngineConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    steps: StepsConfig = field(default_factory=StepsConfig)
    answers: AnswersConfig = field(default_factory=AnswersConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    annotators: dict[str, dict[str, Any]] = field(default_factory=dict)  # verifiers by name: arithmetic, logic, code
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> Config:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "validate"):
                value.validate(f.name)
        for name in self.annotators:
            choice(f"annotators.{name}", name, set(VERIFIERS))
        known = {"mc", "judge", *self.annotators}
        for name in [*self.filters.consensus.annotators, *self.filters.consensus.veto]:
            if self.filters.consensus.enabled and name not in known:
                raise ConfigError(
                    f"filters.consensus: {name!r} is not a configured annotator ({', '.join(sorted(known))})"
                )
        if self.filters.consensus.enabled and "judge" in self.filters.consensus.annotators and not self.judge.enabled:
            raise ConfigError("filters.consensus.annotators: 'judge' needs judge.enabled: true")
        return self

    def judge_engine(self) -> EngineConfig:
        """The judge's engine: its own when configured, else the policy's."""
        return self.judge.engine if self.judge.engine.model else self.policy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_dict(self) -> dict[str, Any]:
        """The config without its execution-only keys (`EXECUTION_KEYS`): what decides the data."""
        return data_keys(self.to_dict())

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the keys that change the data (the run's identity and version folder).

        The same data generated on other hardware, with other retries or batching, gets the same hash.
        """
        return hashlib.sha256(canonical_json(self.data_dict()).encode()).hexdigest()


# Keys that say how a run executes, never what it produces: they stay out of the config hash, so the same data
# run on other infrastructure lands in the same version folder. Seeds are per request, derived from (run seed,
# problem id, request identity) and never from batching (docs/design.md §5), so batch sizes are here too.
_ENGINE_EXECUTION_KEYS = (
    "base_url",  # where the server is; the model it serves is `model` (+ `revision`)
    "api_key_env",
    "request_timeout_s",
    "max_retries",
    "backoff_s",
    "threads",  # torch threads on CPU
    "gpu_memory_utilization",
    "kv_cache_memory_bytes",
    "max_num_seqs",
    "enforce_eager",  # CUDA graphs or eager: the same sampling, other speed
)
EXECUTION_KEYS: tuple[str, ...] = (
    "resources",  # the accelerator hint and engine sharing (Dataflow)
    "cache",  # whether and where samples are reused: a cached sample is the sample the seed gives
    *(f"policy.{key}" for key in _ENGINE_EXECUTION_KEYS),
    *(f"judge.engine.{key}" for key in _ENGINE_EXECUTION_KEYS),
    "search.problems_per_batch",
    "search.max_sequences_per_call",
    "search.sequences_in_flight",
    "search.driver",  # requests or rounds: same samples (engines/driver.py)
)
# Keys added after runs were hashed: left out of the hash while unset, so a config that does not use them keeps the
# hash (and version folder, and `config_hash` column) it had before they existed.
OPTIONAL_KEYS: tuple[str, ...] = ("input.dataset.revision",)


def data_keys(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict without the `EXECUTION_KEYS`, nor the `OPTIONAL_KEYS` left unset (missing keys are
    fine: older manifests)."""
    out = json.loads(json.dumps(config))
    for dotted in (*EXECUTION_KEYS, *OPTIONAL_KEYS):
        *parents, last = dotted.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and (dotted in EXECUTION_KEYS or node.get(last) is None):
            node.pop(last, None)
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    data = json.loads(json.dumps(data or {}))  # deep copy; overrides must not touch the caller's dict
    for assignment in overrides:
        apply_override(data, assignment)
    return build(Config, data, "").validate()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (no validation); errors name the file."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"--config {path}: {error.strerror}") from error
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"--config {path}: invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping at the top, got {type(data).__name__}")
    return data


def merge_config(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` laid over `base`, section by section: a key `update` does not name keeps `base`'s value."""
    out = json.loads(json.dumps(base))
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config file, apply overrides, validate. Relative model/input paths stay as written."""
    return config_from_dict(read_config_file(path), overrides)
