#!/usr/bin/env bash
# Slurm Prolog (runs as root on every node of a job as it is allocated; set PrologFlags=Alloc so that
# salloc and srun jobs get it too): registers this node's part of the job with Wattlas. Each node posts
# its own GPUs (SLURM_JOB_GPUS); the server merges them into one job.
#
# Identity: Slurm 22.05 gives a prolog neither the job's name nor, for an array task or a component of
# a heterogeneous job, its id as sacct writes it (task 4_2 is only "raw job 5" here), so `job start`
# asks `scontrol show job -o` once (5 s at most; --no-scontrol registers the raw id, which the sacct
# import and `slurm sync` later resolve).
# Tags: the job's comment, `sbatch --comment "workload=bert-mlm project=nlp"` (a prolog sees none of
# the job's own environment; slurmdbd keeps the comment for the sacct import with
# AccountingStoreFlags=job_comment). A power cap: the tag power_cap_w=150 (e.g. the cap the advisor on
# /powercap proposes for the workload) sets the NVML power limit of the job's GPUs before it starts;
# the prolog notes which GPUs it capped, and the epilog resets those and no others.
# Settings: WATTLAS_SERVER and the node's token (WATTLAS_TOKEN, or the file /etc/wattlas/token), from
# /etc/wattlas/slurm.env if present (slurmd gives its scripts no environment of its own).
# Never fail or hold the job because Wattlas is down (15 s at most): the collector's samples are
# spooled anyway, and the sacct import registers a job its prolog could not (without the GPUs
# sacct cannot name).
set -u
# slurmd runs its scripts without PATH.
export PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
[ -r /etc/wattlas/slurm.env ] && . /etc/wattlas/slurm.env
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_TOKEN:-$(cat /etc/wattlas/token 2>/dev/null)}
collector=${WATTLAS_COLLECTOR:-/usr/local/bin/wattlas-collector}
state=${WATTLAS_STATE_DIR:-/run/wattlas}
tags=()
cap=""
for kv in ${SLURM_JOB_COMMENT:-}; do
  case "$kv" in *=*) tags+=(--tag "$kv");; esac
  case "$kv" in power_cap_w=*) cap=${kv#power_cap_w=};; esac
done
if [ -n "$cap" ] && [ -n "${SLURM_JOB_GPUS:-}" ]; then
  if "$collector" cap set --watts "$cap" --gpus "$SLURM_JOB_GPUS" >/dev/null; then
    mkdir -p "$state" && echo "$SLURM_JOB_GPUS" >"$state/capped-$SLURM_JOB_ID"
  else
    logger -t wattlas "power cap $cap W of ${SLURM_JOB_ID:-?} not applied"
  fi
fi
timeout 15 "$collector" job start "${tags[@]}" || logger -t wattlas "job start of ${SLURM_JOB_ID:-?} not registered"
exit 0
