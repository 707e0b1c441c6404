"""Evaluation on the rendered test split and real stacks: inference over the test set, the
baselines, metrics, scores and figures."""
