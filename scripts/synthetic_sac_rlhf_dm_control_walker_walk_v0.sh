#!/usr/bin/env bash
# PEBBLE on dm_control/walker-walk-v0: a paper's configuration, B-Pref's walker_walk script (1000 labels, reward_batch 100, 500k steps, lr 5e-4);
# B-Pref's PEBBLE settings (train_PEBBLE.yaml): 1000 random + 9000 unsupervised steps, segments of 50,
# disagreement sampling from 10x candidates, 50 reward epochs per session, reward lr 3e-4, 3 x (3 x 256)
# ensemble, no SURF; SAC 2 x 1024, batch 1024, initial alpha 0.1 (B-Pref DMC). Differs: our linear
# schedule spreads the sessions over the run (B-Pref asks every 20k-30k steps until the budget is spent).
# Append flags to change anything (later flags win), e.g. --seed 2 --track.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run python framework/sac_rlhf.py \
    --env-id dm_control/walker-walk-v0 \
    --total-timesteps 500000 \
    --teacher-feedback-total-queries 1000 \
    --teacher-feedback-num-queries-per-session 100 \
    --total-explore-steps 10000 \
    --explore-learning-starts 1000 \
    --trajectory-length 50 \
    --preference-sampling disagree \
    --query-pool-multiplier 10 \
    --teacher-update-epochs 50 \
    --teacher-learning-rate 0.0003 \
    --reward-net-hidden-dim 256 \
    --reward-net-hidden-layers 3 \
    --reward-net-ensemble-size 3 \
    --teacher-feedback-schedule linear \
    --no-surf \
    --actor-and-q-net-hidden-dim 1024 \
    --actor-and-q-net-hidden-layers 2 \
    --batch-size 1024 \
    --policy-lr 5e-4 \
    --q-lr 5e-4 \
    --alpha 0.1 \
    "$@"
