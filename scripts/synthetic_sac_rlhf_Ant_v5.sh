#!/usr/bin/env bash
# PEBBLE on Ant-v5: a paper's configuration, B-Pref's PEBBLE (Lee et al. 2021, train_PEBBLE.yaml):
# 1000 random + 9000 unsupervised steps, segments of 50, disagreement sampling from 10x candidates,
# 50 reward epochs per session, reward lr 3e-4, 3 x (3 x 256) ensemble, no SURF, 10 sessions (as its DMC scripts). B-Pref ran
# no Gymnasium MuJoCo task: the budget (1000000 steps, 1400 labels) is ours (sweep_config/Ant-v5.yaml)
# and SAC keeps CleanRL's defaults (2 x 256, lr 3e-4 / 1e-3). Not tuned here.
# Append flags to change anything (later flags win), e.g. --seed 2 --track.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run python framework/sac_rlhf.py \
    --env-id Ant-v5 \
    --total-timesteps 1000000 \
    --teacher-feedback-total-queries 1400 \
    --teacher-feedback-num-queries-per-session 140 \
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
    "$@"
