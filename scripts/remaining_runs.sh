#!/bin/bash
# The reproduction runs still missing from docs/results/reproduce, for a 2-core machine: either one
# queue of two-thread jobs, `bash scripts/remaining_runs.sh one`, or two queues ("lanes") of one-thread
# jobs side by side, `bash scripts/remaining_runs.sh A` and `bash scripts/remaining_runs.sh B` (each in
# its own terminal, or `setsid nohup ... &`). Two threads ran 1.25x one thread's speed
# (`benchmarks/pretrain_parallel.py`, 2026-12-03, Intel Xeon, 2 vCPUs): `one` finishes a long run
# sooner: better where a session can end before a run does.
#
# Every step is an `s3rec reproduce` command: finished runs are skipped, a run the other lane holds
# is left to it (no --wait), and a pre-training resumes from its last epoch while runs/ survives (on a
# fresh checkout run `python scripts/restore_runs.py docs/results/reproduce runs/reproduce` first).
# `--report` rewrites the experiment's report after each finished run: commit docs/results/reproduce
# as runs land. Order: what one session can finish first (Fig. 2's w/o SP at 150 pre-training epochs,
# Fig. 3's pairs at 10), then Fig. 2's w/o MAP (150 epochs with SP: 2.7 h of a 3-hour session), all
# finished by 2026-12-04 (their steps are skipped now), then Fig. 4's 80% point, then issue 6's Toys,
# Sports and Yelp rows. `s3rec reproduce NAME ... --dry-run`
# shows what each step has left and its cost.
set -u
lane=${1:?usage: remaining_runs.sh one|A|B}
cd "$(dirname "$0")/.."
threads=1; [ "$lane" = one ] && threads=2
export OMP_NUM_THREADS=$threads S3REC_DATA_DIR=${S3REC_DATA_DIR:-../shared/data}
S="s3rec reproduce"
R=docs/results/reproduce
step() { echo "== $(date -u '+%F %T') $*"; "$@" --jobs 1 --quiet; echo "== exit $?"; }

strong() {  # issue 6, per dataset: the cheaper rows first (the paper's S3-Rec, then the sampled-softmax
  # preset: ~1 h a seed on Sports by --dry-run's estimate), then the full-softmax pair (~2.3-2.6 h a seed
  # estimated on Sports and Yelp), each then tested sampled
  for d in Toys Sports Yelp; do
    for methods in "S3-Rec S3-Rec-plus" "S3-Rec-CE SASRec-CE"; do
      step $S strong_finetuning --datasets $d --methods $methods --report $R/strong_finetuning
      step $S strong_sampled --datasets $d --methods $methods --report $R/strong_sampled
    done
  done
}

case $lane in
  one|A)
    step $S ablation --datasets Beauty --methods no-SP --report $R/ablation
    step $S pretrain_others --datasets Beauty --seeds 42 --pretrain-epochs 10 \
      --out runs/reproduce/pretrain_others_pretrain10 --report $R/pretrain_others_pretrain10
    step $S ablation --datasets Beauty --methods no-MAP --report $R/ablation
    step $S limited_data --datasets Beauty --seeds 42 --methods S3-Rec --values 0.8 --report $R/limited_data
    strong ;;
  B)
    step $S ablation --datasets Beauty --methods no-SP no-MAP --report $R/ablation
    step $S limited_data --datasets Beauty --seeds 42 --methods S3-Rec --values 0.8 --report $R/limited_data
    strong ;;
  *) echo "remaining_runs.sh: unknown queue '$lane' (one, A or B)" >&2; exit 2 ;;
esac
