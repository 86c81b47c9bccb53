"""Reproducing the paper's experiments: one command per table and figure (docs/semantics.md, #experiments).

- :mod:`.experiment`: the definitions (small TOML files in ``experiments/``), loaded and narrowed;
- :mod:`.plan`: a definition expanded into fine-tuning and shared pre-training runs with stable folders;
- :mod:`.cost`: the stated cost model behind ``--dry-run``;
- :mod:`.runner`: runs a plan, resumable, failures recorded (``grid.json`` holds the statuses);
- :mod:`.report`: ``s3rec report``: an experiment's report (Markdown, CSV, PNG) from its runs folder,
  made from :mod:`.collect` (a runs folder read into runs and cells), :mod:`.tables` (Markdown and
  CSV text), :mod:`.significance` (the paired t-tests), :mod:`.plots` (matplotlib), :mod:`.index`
  (the index of a folder of reports) and :mod:`.preset_report` (presets against the paper);
- :mod:`.records`: the record beside each report (``runs.json``, ``test_ranks.npz``) and a runs
  folder rebuilt from it;
- :mod:`.stats`: the exact paired t-test. The paper's numbers: :mod:`s3rec.paper`.

Command line: ``s3rec reproduce EXPERIMENT`` and ``s3rec report RUNS_DIR``.
"""
