"""Hyper-parameter search on the validation split (``s3rec tune``), with optuna.

- :mod:`s3rec.tune.space`: the search space, a small TOML file (shipped ones in ``tune/spaces/``);
- :mod:`s3rec.tune.study`: the search itself, resumable from a journal file in the study folder.

optuna is imported only here, when a search runs, so ``import s3rec`` stays cheap.
"""
