"""Train and use a process reward model on StepForge's output: alignment, training, scoring, best-of-N."""
