"""Reproducing the paper's experiments: one command per table and figure (SPEC section 7).

- :mod:`.experiment`: the definitions (small TOML files in ``experiments/``), loaded and narrowed;
- :mod:`.plan`: a definition expanded into fine-tuning and shared pre-training runs with stable folders;
- :mod:`.cost`: the stated cost model behind ``--dry-run``;
- :mod:`.runner`: runs a plan, resumable, failures recorded (``grid.json`` holds the statuses);
- :mod:`.report`: Markdown and CSV tables (ours, the paper's, the relative difference, a paired
  t-test) and PNG plots from an experiment's folder;
- :mod:`.stats`: the exact paired t-test; :mod:`.paper`: the paper's published numbers.

Command line: ``s3rec reproduce EXPERIMENT`` and ``s3rec report RUNS_DIR``.
"""
