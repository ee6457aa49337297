"""Test data: the flag lists of the original CleanRLHF project's 11 launch scripts (github.com/jualat/CleanRLHF,
``scripts/*.sh``), as its users run them, with only ``--early_stop`` / ``--no-early_stop`` taken out (the
original rejects those itself: tyro knows no such flag there either). Each list is the script's command line after
``poetry run python [framework/]sac_rlhf.py``, quoted as in the script; ``CWD`` says whether the script runs
from the repository root (``framework/sac_rlhf.py``) or from ``framework/`` (``sac_rlhf.py``).
"""

from __future__ import annotations

import shlex

ROOT, FRAMEWORK = "repository root", "framework/"

_SCRIPTS: dict[str, tuple[str, str]] = {
    # scripts/human_sac_Hopper_v5_salto.sh
    "human_sac_Hopper_v5_salto": (
        FRAMEWORK,
        """--actor_and_q_net_hidden_dim=512 --actor_and_q_net_hidden_layers=5 --alpha=0.2 --autotune
        --batch_size=256 --buffer_size=1000000 --capture_video --cuda --no-early_stopping --early_stop_patience=5
        --early_stopping_mean=1000 --early_stopping_step=500000 --no-enable_greater_or_smaller_check
        --env_id="Hopper-v5" --evaluation_episodes=10 --evaluation_frequency=10000 --no-exploration_load
        --explore_batch_size=256 --explore_learning_starts=512 --gamma=0.9939604765683844 --lambda_ssl=0.1
        --learning_starts=5000 --log_file --log_level="INFO" --max_augmentation_offset=10
        --min_augmentation_offset=5 --path_to_model="" --path_to_replay_buffer="" --policy_frequency=2
        --policy_lr=0.0002236151342771317 --pref_buffer_size_sessions=10 --preference_sampling="disagree"
        --q_lr=0.0006143918780906629 --reward_net_dropout=0.1 --reward_net_hidden_dim=256
        --reward_net_hidden_layers=5 --reward_net_val_split=0.2 --no-rune --rune_beta=0.08936083059656459
        --rune_beta_decay=0.0001 --seed=1 --no-surf --surf_sampling_strategy="disagree" --surf_tau=0.999
        --target_network_frequency=1 --tau=0.005 --teacher_batch_strategy="minibatch"
        --teacher_feedback_batch_size=16 --teacher_feedback_exponential_lambda=0.1
        --teacher_feedback_num_queries_per_session=40 --teacher_feedback_schedule="linear"
        --teacher_feedback_total_queries=6000 --teacher_learning_rate=0.0008147316395014214
        --teacher_minibatch_size=20 --teacher_sim_beta=-1 --teacher_sim_delta_equal=0
        --teacher_sim_delta_skip=-10000000 --teacher_sim_epsilon=0 --teacher_sim_gamma=1
        --teacher_update_epochs=17 --torch_deterministic --total_explore_steps=10000 --total_timesteps=4000000
        --track --trajectory_length=128 --unlabeled_batch_ratio=2 --unsupervised_exploration
        --wandb_entity="cleanRLHF" --wandb_project_name="Hopper_human_feedback"
        --feedback_server_url="http://localhost:5001" --feedback_server_autostart --teacher_feedback_mode="human"
        """,
    ),
    # scripts/human_sac_Pusher_v5.sh
    "human_sac_Pusher_v5": (
        FRAMEWORK,
        """--env-id=Pusher-v5 --tau 0.005 --q_lr 0.00015777259423254417 --rune --seed 7 --surf --alpha 0.2
        --gamma 0.992791800741667 --track --autotune --log_file --surf_tau 0.999 --policy_lr 0.0008920273424190728
        --rune_beta 555.6552344998339 --batch_size 256 --no-early_stopping --lambda_ssl 0.1 --buffer_size 1000000
        --learning_starts 5000 --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1
        --trajectory_length 128 --explore_batch_size 256 --reward_net_dropout 0.2 --evaluation_episodes 10
        --preference_sampling disagree --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000
        --evaluation_frequency 10000 --reward_net_val_split 0 --reward_net_hidden_dim 128
        --teacher_learning_rate 0.0008883200043694438 --teacher_update_epochs 20 --unlabeled_batch_ratio 1
        --surf_sampling_strategy uniform --teacher_batch_strategy full --teacher_minibatch_size 10
        --teacher_sim_delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --min_augmentation_offset 5 --teacher_sim_delta_equal 0 --reward_net_hidden_layers 4
        --target_network_frequency 1 --unsupervised_exploration --teacher_feedback_schedule linear
        --actor_and_q_net_hidden_dim 128 --teacher_feedback_batch_size 16 --actor_and_q_net_hidden_layers 3
        --teacher_feedback_total_queries 5000 --no-enable_greater_or_smaller_check
        --teacher_feedback_exponential_lambda 0.1 --teacher_feedback_num_queries_per_session 30
        --teacher_feedback_mode human --feedback_server_autostart --wandb_project_name Pusher-human-feedback
        --wandb-entity CleanRLHF --no-exploration-load
        """,
    ),
    # scripts/human_sac_Swimmer_v5.sh (it writes --teacher_sim-delta_skip and gives --wandb_project_name twice)
    "human_sac_Swimmer_v5": (
        FRAMEWORK,
        """--env-id=Swimmer-v5 --exp_name=Junis-Test --wandb_project_name=Junis-Test --tau 0.005
        --q_lr 0.00043582739885087064 --no-rune --seed 9 --surf --alpha 0.2 --gamma 0.9919472689386292 --track
        --autotune --log_file --surf_tau 0.999 --policy_lr 0.0005031039106349765 --rune_beta 174.62233215792418
        --batch_size 256 --no-early_stopping --lambda_ssl 0.1 --buffer_size 1000000 --capture-video
        --learning_starts 5000 --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1
        --trajectory_length 64 --explore_batch_size 256 --reward_net_dropout 0.2 --evaluation_episodes 10
        --preference_sampling disagree --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000
        --evaluation_frequency 10000 --reward_net_val_split 0.2 --reward_net_hidden_dim 128
        --teacher_learning_rate 0.0007688948297561301 --teacher_update_epochs 14 --unlabeled_batch_ratio 4
        --surf_sampling_strategy disagree --teacher_batch_strategy full --teacher_minibatch_size 20
        --teacher_sim-delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --teacher_sim_delta_equal 0 --reward_net_hidden_layers 2 --target_network_frequency 1
        --unsupervised_exploration --teacher_feedback_schedule linear --actor_and_q_net_hidden_dim 256
        --teacher_feedback_batch_size 32 --actor_and_q_net_hidden_layers 4 --teacher_feedback_total_queries 750
        --no-enable_greater_or_smaller_check --teacher_feedback_exponential_lambda 0.1
        --teacher_feedback_num_queries_per_session 20 --teacher_feedback_mode human --feedback_server_autostart
        --wandb_project_name Swimmer-human-feedback --wandb-entity CleanRLHF
        """,
    ),
    # scripts/human_sac_Walker2D_v5.sh (despite its name, it asks the simulated teacher: no --teacher_feedback_mode)
    "human_sac_Walker2D_v5": (
        FRAMEWORK,
        """--tau 0.005 --cuda --q_lr 0.000827336108962408 --no-rune --seed 9 --surf --alpha 0.2
        --gamma 0.9931769082895664 --track --env_id Walker2d-v5 --autotune --log_file --surf_tau 0.999
        --log_level INFO --policy_lr 0.000817059260182526 --rune_beta 170.97115749208623 --batch_size 256
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.00001 --total_timesteps 2000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 32
        --explore_batch_size 256 --reward_net_dropout 0.1 --wandb_project_name "" --evaluation_episodes 10
        --preference_sampling entropy --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000
        --evaluation_frequency 10000 --reward_net_val_split 0 --path_to_replay_buffer "" --reward_net_hidden_dim 64
        --teacher_learning_rate 0.000882512016113888 --teacher_update_epochs 12 --unlabeled_batch_ratio 2
        --surf_sampling_strategy disagree --teacher_batch_strategy batch --teacher_minibatch_size 20
        --teacher_sim_delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --min_augmentation_offset 5 --teacher_sim_delta_equal 0 --reward_net_hidden_layers 2
        --target_network_frequency 1 --unsupervised_exploration --teacher_feedback_schedule exponential
        --actor_and_q_net_hidden_dim 512 --teacher_feedback_batch_size 16 --actor_and_q_net_hidden_layers 3
        --teacher_feedback_total_queries 2000 --no-enable_greater_or_smaller_check
        --teacher_feedback_exponential_lambda 0.1 --teacher_feedback_num_queries_per_session 40
        """,
    ),
    # scripts/synthetic_sac_Ant_v5.sh
    "synthetic_sac_Ant_v5": (
        ROOT,
        """--tau 0.005 --cuda --q_lr 0.0007722867867172924 --no-rune --seed 6 --no-surf --alpha 0.2
        --gamma 0.9921914450114264 --track --env_id Ant-v5 --autotune --log_file --surf_tau 0.999 --log_level INFO
        --policy_lr 0.0004475438110935111 --rune_beta 0.05 --batch_size 256 --lambda_ssl 0.1 --buffer_size 1000000
        --wandb_entity "" --no-capture_video --path_to_model "" --no-early_stopping --learning_starts 5000
        --rune_beta_decay 0.0001 --total_timesteps 1000000 --no-exploration_load --policy_frequency 2
        --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 128 --explore_batch_size 256
        --reward_net_dropout 0.2 --wandb_project_name "" --early_stop_patience 5 --early_stopping_mean 0
        --early_stopping_step 500000 --evaluation_episodes 10 --preference_sampling disagree
        --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000 --evaluation_frequency 10000
        --reward_net_val_split 0.2 --path_to_replay_buffer "" --reward_net_hidden_dim 128
        --teacher_learning_rate 0.0005170954586836862 --teacher_update_epochs 16 --unlabeled_batch_ratio 2
        --surf_sampling_strategy uniform --teacher_batch_strategy minibatch --teacher_minibatch_size 5
        --teacher_sim_delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --min_augmentation_offset 5 --teacher_sim_delta_equal 0 --reward_net_hidden_layers 2
        --target_network_frequency 1 --unsupervised_exploration --pref_buffer_size_sessions 1
        --teacher_feedback_schedule linear --actor_and_q_net_hidden_dim 256 --teacher_feedback_batch_size 32
        --actor_and_q_net_hidden_layers 3 --teacher_feedback_total_queries 3000
        --no-enable_greater_or_smaller_check --teacher_feedback_exponential_lambda 0.1
        --teacher_feedback_num_queries_per_session 40
        """,
    ),
    # scripts/synthetic_sac_HalfCheetah_v5.sh (--early_stop taken out)
    "synthetic_sac_HalfCheetah_v5": (
        FRAMEWORK,
        """--tau 0.005 --cuda --q_lr 0.0001424894676705287 --no-rune --seed 5 --surf --alpha 0.2
        --gamma 0.9918014666449922 --track --env_id HalfCheetah-v5 --autotune --log_file --surf_tau 0.999
        --log_level INFO --policy_lr 0.0009192859497068564 --rune_beta 0.09874829280993724 --batch_size 256
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.001 --total_timesteps 1000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 128
        --explore_batch_size 256 --reward_net_dropout 0.3 --wandb_project_name "" --early_stop_patience 5
        --early_stopping_mean 3000 --early_stopping_step 500000 --evaluation_episodes 10
        --preference_sampling entropy --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000
        --evaluation_frequency 10000 --reward_net_val_split 0.2 --path_to_replay_buffer ""
        --reward_net_hidden_dim 512 --teacher_learning_rate 0.0005455315715873941 --teacher_update_epochs 17
        --unlabeled_batch_ratio 2 --surf_sampling_strategy uniform --teacher_batch_strategy full
        --teacher_minibatch_size 5 --teacher_sim_delta_skip -10000000 --explore_learning_starts 512
        --max_augmentation_offset 10 --min_augmentation_offset 5 --teacher_sim_delta_equal 0
        --reward_net_hidden_layers 4 --target_network_frequency 1 --unsupervised_exploration
        --pref_buffer_size_sessions 1 --teacher_feedback_schedule linear --actor_and_q_net_hidden_dim 128
        --teacher_feedback_batch_size 32 --actor_and_q_net_hidden_layers 4 --teacher_feedback_total_queries 3000
        --no-enable_greater_or_smaller_check --teacher_feedback_exponential_lambda 0.1
        --teacher_feedback_num_queries_per_session 50
        """,
    ),
    # scripts/synthetic_sac_Hopper_v5.sh (--early_stop taken out)
    "synthetic_sac_Hopper_v5": (
        ROOT,
        """--tau 0.005 --cuda --q_lr 0.0006143918780906629 --no-rune --seed 1 --no-surf --alpha 0.2
        --gamma 0.9939604765683844 --track --env_id Hopper-v5 --autotune --log_file --surf_tau 0.999
        --log_level INFO --policy_lr 0.0002236151342771317 --rune_beta 0.08936083059656459 --batch_size 256
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.0001 --total_timesteps 1000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 128
        --explore_batch_size 256 --reward_net_dropout 0.1 --wandb_project_name "" --early_stop_patience 5
        --early_stopping_mean 1000 --early_stopping_step 500000 --evaluation_episodes 10
        --preference_sampling uniform --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000
        --evaluation_frequency 10000 --reward_net_val_split 0.2 --path_to_replay_buffer ""
        --reward_net_hidden_dim 256 --teacher_learning_rate 0.0008147316395014214 --teacher_update_epochs 17
        --unlabeled_batch_ratio 2 --surf_sampling_strategy disagree --teacher_batch_strategy minibatch
        --teacher_minibatch_size 20 --teacher_sim_delta_skip -10000000 --explore_learning_starts 512
        --max_augmentation_offset 10 --min_augmentation_offset 5 --teacher_sim_delta_equal 0
        --reward_net_hidden_layers 5 --target_network_frequency 1 --unsupervised_exploration
        --pref_buffer_size_sessions 1 --teacher_feedback_schedule linear --actor_and_q_net_hidden_dim 512
        --teacher_feedback_batch_size 16 --actor_and_q_net_hidden_layers 5 --teacher_feedback_total_queries 3000
        --no-enable_greater_or_smaller_check --teacher_feedback_exponential_lambda 0.1
        --teacher_feedback_num_queries_per_session 20
        """,
    ),
    # scripts/synthetic_sac_Pusher_v5.sh
    "synthetic_sac_Pusher_v5": (
        FRAMEWORK,
        """--tau 0.005 --cuda --q_lr 0.00037842808598335774 --no-rune --seed 9 --surf --alpha 0.2
        --gamma 0.99082585794086 --track --env_id Pusher-v5 --autotune --log_file --surf_tau 0.999 --log_level INFO
        --policy_lr 0.0007817968790905606 --rune_beta 0.07023704031569315 --batch_size 256 --no-early_stopping
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.001 --total_timesteps 1000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 32
        --explore_batch_size 256 --reward_net_dropout 0.1 --wandb_project_name "" --early_stop_patience 5
        --early_stopping_mean 0 --early_stopping_step 500000 --evaluation_episodes 10 --preference_sampling disagree
        --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000 --evaluation_frequency 10000
        --reward_net_val_split 0.2 --path_to_replay_buffer "" --reward_net_hidden_dim 128
        --teacher_learning_rate 0.0005350354578686624 --teacher_update_epochs 15 --unlabeled_batch_ratio 4
        --surf_sampling_strategy uniform --teacher_batch_strategy minibatch --teacher_minibatch_size 20
        --teacher_sim_delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --min_augmentation_offset 5 --teacher_sim_delta_equal 0 --reward_net_hidden_layers 2
        --target_network_frequency 1 --unsupervised_exploration --teacher_feedback_schedule exponential
        --actor_and_q_net_hidden_dim 128 --teacher_feedback_batch_size 32 --actor_and_q_net_hidden_layers 5
        --teacher_feedback_total_queries 1500 --no-enable_greater_or_smaller_check --pref_buffer_size_sessions 1
        --teacher_feedback_exponential_lambda 0.1 --teacher_feedback_num_queries_per_session 20
        """,
    ),
    # scripts/synthetic_sac_Reacher_v5.sh (--no-early_stop taken out)
    "synthetic_sac_Reacher_v5": (
        ROOT,
        """--tau 0.005 --cuda --q_lr 0.00033371535287005474 --no-rune --seed 9 --no-surf --alpha 0.2
        --gamma 0.9929271975704816 --track --env_id Reacher-v5 --autotune --log_file --surf_tau 0.999
        --log_level INFO --policy_lr 0.0004543447573559535 --rune_beta 0.06871840390341243 --batch_size 256
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.001 --total_timesteps 1000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 32
        --explore_batch_size 256 --reward_net_dropout 0.1 --wandb_project_name "" --early_stop_patience 5
        --early_stopping_mean 0 --early_stopping_step 500000 --evaluation_episodes 10 --preference_sampling disagree
        --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000 --evaluation_frequency 10000
        --reward_net_val_split 0.2 --path_to_replay_buffer "" --reward_net_hidden_dim 128
        --teacher_learning_rate 0.0005884042668042443 --teacher_update_epochs 10 --unlabeled_batch_ratio 4
        --surf_sampling_strategy disagree --teacher_batch_strategy full --teacher_minibatch_size 5
        --teacher_sim_delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --min_augmentation_offset 5 --teacher_sim_delta_equal 0 --reward_net_hidden_layers 3
        --target_network_frequency 1 --unsupervised_exploration --teacher_feedback_schedule exponential
        --actor_and_q_net_hidden_dim 512 --teacher_feedback_batch_size 32 --actor_and_q_net_hidden_layers 3
        --teacher_feedback_total_queries 1500 --no-enable_greater_or_smaller_check
        --teacher_feedback_exponential_lambda 0.1 --teacher_feedback_num_queries_per_session 20
        """,
    ),
    # scripts/synthetic_sac_Swimmer_v5.sh (--no-early_stop taken out)
    "synthetic_sac_Swimmer_v5": (
        ROOT,
        """--tau 0.005 --cuda --q_lr 0.00043582739885087064 --rune --seed 9 --surf --alpha 0.2
        --gamma 0.9919472689386292 --track --env_id Swimmer-v5 --autotune --log_file --surf_tau 0.999
        --log_level INFO --policy_lr 0.0005031039106349765 --rune_beta 174.62233215792418 --batch_size 256
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.00001 --total_timesteps 1000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 64
        --explore_batch_size 256 --reward_net_dropout 0.2 --wandb_project_name "" --early_stop_patience 5
        --early_stopping_mean 0 --early_stopping_step 500000 --evaluation_episodes 10 --preference_sampling disagree
        --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000 --evaluation_frequency 10000
        --reward_net_val_split 0.2 --path_to_replay_buffer "" --reward_net_hidden_dim 128
        --teacher_learning_rate 0.0007688948297561301 --teacher_update_epochs 14 --unlabeled_batch_ratio 4
        --surf_sampling_strategy disagree --teacher_batch_strategy full --teacher_minibatch_size 20
        --teacher_sim_delta_skip -10000000 --explore_learning_starts 512 --max_augmentation_offset 10
        --min_augmentation_offset 5 --teacher_sim_delta_equal 0 --reward_net_hidden_layers 2
        --target_network_frequency 1 --unsupervised_exploration --teacher_feedback_schedule linear
        --actor_and_q_net_hidden_dim 256 --teacher_feedback_batch_size 32 --actor_and_q_net_hidden_layers 4
        --teacher_feedback_total_queries 1500 --no-enable_greater_or_smaller_check
        --teacher_feedback_exponential_lambda 0.1 --teacher_feedback_num_queries_per_session 20
        """,
    ),
    # scripts/synthetic_sac_Walker2D_v5.sh (--early_stop taken out)
    "synthetic_sac_Walker2D_v5": (
        FRAMEWORK,
        """--tau 0.005 --cuda --q_lr 0.000827336108962408 --no-rune --seed 9 --surf --alpha 0.2
        --gamma 0.9931769082895664 --track --env_id Walker2d-v5 --autotune --log_file --surf_tau 0.999
        --log_level INFO --policy_lr 0.000817059260182526 --rune_beta 170.97115749208623 --batch_size 256
        --lambda_ssl 0.1 --buffer_size 1000000 --wandb_entity "" --no-capture_video --path_to_model ""
        --learning_starts 5000 --rune_beta_decay 0.00001 --total_timesteps 1000000 --no-exploration_load
        --policy_frequency 2 --teacher_sim_beta -1 --teacher_sim_gamma 1 --trajectory_length 32
        --explore_batch_size 256 --reward_net_dropout 0.1 --wandb_project_name "" --early_stop_patience 5
        --early_stopping_mean 1500 --early_stopping_step 500000 --evaluation_episodes 10
        --preference_sampling entropy --teacher_sim_epsilon 0 --torch_deterministic --total_explore_steps 10000
        --evaluation_frequency 10000 --reward_net_val_split 0.2 --path_to_replay_buffer ""
        --reward_net_hidden_dim 64 --teacher_learning_rate 0.000882512016113888 --teacher_update_epochs 12
        --unlabeled_batch_ratio 2 --surf_sampling_strategy disagree --teacher_batch_strategy batch
        --teacher_minibatch_size 20 --teacher_sim_delta_skip -10000000 --explore_learning_starts 512
        --max_augmentation_offset 10 --min_augmentation_offset 5 --teacher_sim_delta_equal 0
        --reward_net_hidden_layers 2 --target_network_frequency 1 --unsupervised_exploration
        --teacher_feedback_schedule exponential --actor_and_q_net_hidden_dim 512 --teacher_feedback_batch_size 16
        --actor_and_q_net_hidden_layers 3 --teacher_feedback_total_queries 2000
        --no-enable_greater_or_smaller_check --teacher_feedback_exponential_lambda 0.1
        --teacher_feedback_num_queries_per_session 50
        """,
    ),
}

# name -> (the directory the script runs from, its flags as the shell passes them)
SCRIPTS: dict[str, tuple[str, list[str]]] = {name: (cwd, shlex.split(text)) for name, (cwd, text) in _SCRIPTS.items()}
HUMAN = sorted(name for name, (_, argv) in SCRIPTS.items() if "--teacher_feedback_mode" in " ".join(argv))
