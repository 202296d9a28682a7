"""Optimizer training: SFT pairs -> a trained prompt optimizer (rule train_optimizer)."""
