"""`train`: a PRM (or, with `--labels outcome`, an ORM) from finished runs' labelled shards.

    python run.py train RUN [RUN ...] --base MODEL --output CKPT [--labels hard|soft|outcome|exact]

The checkpoint loads with `AutoModelForTokenClassification.from_pretrained(CKPT)`; `prm.score.PRM` scores with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from prm.examples import LABEL_KINDS


def cmd_train(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    from prm.train import TrainConfig, TrainError, train

    if beam_args:
        print(f"train: unknown options {' '.join(beam_args)}", file=sys.stderr)
        return 2
    config = TrainConfig(
        base=args.base,
        output=args.output,
        runs=list(args.runs),
        labels=args.labels,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        separator=json.loads(f'"{args.separator}"') if "\\" in args.separator else args.separator,
        eval_every=args.eval_every,
        save_every=args.save_every,
        device=args.device,
        threads=args.threads,
    )
    try:
        metrics = train(config, progress=print)
    except (TrainError, FileNotFoundError, ValueError) as error:
        print(f"train failed: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"output": args.output, "steps": metrics["steps"], "validation": metrics["validation"]}))
    print(f"Load it:  AutoModelForTokenClassification.from_pretrained('{args.output}')  or  prm.score.PRM")
    return 0


def add_train_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a PRM (or ORM) on finished runs' labelled shards")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s) with data/train-*.parquet")
    parser.add_argument("--base", required=True, help="causal LM folder or Hub id to put the 2-label head on")
    parser.add_argument("--output", required=True, help="checkpoint folder (rerun with it to resume)")
    parser.add_argument("--labels", choices=LABEL_KINDS, default="hard", help="which targets (default: hard)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="share of problems held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--separator", default="\\n", help="step separator token text (default: newline, as TRL)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(func=cmd_train)
