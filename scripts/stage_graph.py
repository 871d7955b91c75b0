"""Print the stage graph of a run's Beam pipeline as a Mermaid flowchart (docs/architecture.md).

    .venv/bin/python scripts/stage_graph.py --config configs/consensus.yaml [--set judge.enabled=true] [--annotate]

Builds the pipeline a `run.py synthesize` (or, with --annotate, `run.py annotate`) would run, without running it,
and prints its top-level stages with the collections between them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stage_graph(pipeline) -> list[tuple[str, str, str]]:
    """(producer stage, consumer stage, collection tag) for every edge between top-level stages."""
    from apache_beam.pipeline import PipelineVisitor

    edges = set()

    def top(applied) -> str:
        while applied.parent is not None and applied.parent.parent is not None:
            applied = applied.parent
        return applied.full_label

    class Visitor(PipelineVisitor):
        def visit_transform(self, node) -> None:
            for collection in node.main_inputs.values():
                if collection.producer is None:  # the pipeline's root input
                    continue
                producer, consumer = top(collection.producer), top(node)
                if producer != consumer:
                    edges.add((producer, consumer, str(collection.tag or "")))

    pipeline.visit(Visitor())
    return sorted(edges)


def main() -> int:
    import apache_beam as beam

    from pipelines import annotate, synthesize
    from schemas.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--annotate", action="store_true", help="the relabel pipeline instead of synthesize")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    pipeline = beam.Pipeline(runner="FnApiRunner")
    if args.annotate:
        annotate.build(pipeline, "PARENT_RUN", config, "OUT")
    else:
        synthesize.build(pipeline, config, "OUT", None)
    node = {}
    print("flowchart TD")
    for producer, consumer, tag in stage_graph(pipeline):
        for name in (producer, consumer):
            node.setdefault(name, f"s{len(node)}")
        label = f"|{tag}|" if tag and tag != "None" else ""
        print(f'    {node[producer]}["{producer}"] -->{label} {node[consumer]}["{consumer}"]')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
