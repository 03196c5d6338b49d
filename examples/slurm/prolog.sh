#!/usr/bin/env bash
# Slurm Prolog (runs as root on every node of a job, before it starts): registers this node's part of the
# job with Wattlas. Each node posts its own GPUs; the server merges them into one job.
# Tags: WATTLAS_TAGS="workload=bert-mlm project=nlp" in the job's environment, or from its comment.
# A power cap: the tag power_cap_w=150 (e.g. the cap the advisor on /powercap proposes for the workload)
# sets the NVML power limit of the job's GPUs (SLURM_JOB_GPUS) before it starts; the epilog resets it.
# Never fail the job because Wattlas is down: the collector's samples are spooled anyway.
set -u
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_TOKEN:-$(cat /etc/wattlas/token 2>/dev/null)}
tags=()
for kv in ${WATTLAS_TAGS:-} ${SLURM_JOB_COMMENT:-}; do
  case "$kv" in *=*) tags+=(--tag "$kv");; esac
done
cap=""
for kv in ${WATTLAS_TAGS:-} ${SLURM_JOB_COMMENT:-}; do
  case "$kv" in power_cap_w=*) cap=${kv#power_cap_w=};; esac
done
if [ -n "$cap" ] && [ -n "${SLURM_JOB_GPUS:-}" ]; then
  /usr/local/bin/wattlas-collector cap set --watts "$cap" --gpus "$SLURM_JOB_GPUS" \
    || logger -t wattlas "power cap $cap W of ${SLURM_JOB_ID:-?} not applied"
fi
/usr/local/bin/wattlas-collector job start "${tags[@]}" || logger -t wattlas "job start of ${SLURM_JOB_ID:-?} not registered"
exit 0
