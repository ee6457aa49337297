#!/usr/bin/env bash
# sac_rlhf.py on Reacher-v5: the best of a local Optuna study of ours, study 'Reacher-v5-tiny'
# (4 trials: 4 complete, 0 pruned) over sweep_config/Reacher-v5.yaml, seeds [1, 2];
# results: scripts/studies/Reacher-v5-tiny.json. Best trial #3: eval/mean_return -9.30 (mean of the seeds);
# re-run on held-out seeds [101, 102]: -11.74 +- 0.18 at step 2000.
# Budget flags are the study's; append your own (later flags win), e.g. --seed 3 --total-timesteps 1000000.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run python framework/sac_rlhf.py \
    --total-timesteps 2000 \
    --total-explore-steps 500 \
    --explore-learning-starts 200 \
    --learning-starts 500 \
    --teacher-feedback-total-queries 100 \
    --actor-and-q-net-hidden-dim 64 \
    --batch-size 64 \
    --explore-batch-size 64 \
    --buffer-size 10000 \
    --evaluation-frequency 500 \
    --evaluation-episodes 3 \
    --log-frequency 250 \
    --env-id Reacher-v5 \
    --teacher-learning-rate 0.00016176209247179796 \
    --teacher-update-epochs 50 \
    --trajectory-length 16 \
    --teacher-feedback-num-queries-per-session 10 \
    --preference-sampling disagree \
    --teacher-feedback-schedule linear \
    --policy-lr 0.0009472387696052412 \
    --q-lr 0.0004923281304224348 \
    "$@"
