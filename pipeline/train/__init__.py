"""GRPO training with Variance-Aware Sampling: scores, sampler, rewards, TRL trainer, verl adapter, plots."""
