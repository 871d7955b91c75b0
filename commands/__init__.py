"""The command line's commands that are not Beam graphs: export, import, publish, report, evaluate, verify, train.

`pipelines/` holds the Beam graphs (synthesize, annotate) and what every run writes (manifest, dataset card).
"""
