"""Benchmarks of the nebula daemon against baselines measured in the same run.

Scripts, not tests: run them with ``just bench`` (or ``python -m bench``) and
read ``bench/README.md`` for what they measure and how to reproduce figures.
"""
