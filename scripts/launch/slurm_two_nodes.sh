#!/bin/bash
# SLURM: 2 nodes x 8 GPUs, one launcher per node; each launcher starts 8 processes (16 in all).
#   sbatch scripts/launch/slurm_two_nodes.sh corm/multithumos_pdan_corm train.output_dir=/shared/runs/corm
#SBATCH --job-name=mmreason
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
set -euo pipefail
CONFIG=$1; shift
MAIN=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun bash -c "accelerate launch --multi_gpu --num_machines $SLURM_NNODES --num_processes $((SLURM_NNODES * 8)) \
  --machine_rank \$SLURM_NODEID --main_process_ip $MAIN --main_process_port 29500 \
  -m mmreason.cli.main train --config $CONFIG $*"
