#!/usr/bin/env bash
# Slurm Prolog (runs as root on every node of a job, before it starts): registers this node's part of the
# job with Wattlas. Each node posts its own GPUs; the server merges them into one job.
# Tags: WATTLAS_TAGS="workload=bert-mlm project=nlp" in the job's environment, or from its comment.
# Never fail the job because Wattlas is down: the collector's samples are spooled anyway.
set -u
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_TOKEN:-$(cat /etc/wattlas/token 2>/dev/null)}
tags=()
for kv in ${WATTLAS_TAGS:-} ${SLURM_JOB_COMMENT:-}; do
  case "$kv" in *=*) tags+=(--tag "$kv");; esac
done
/usr/local/bin/wattlas-collector job start "${tags[@]}" || logger -t wattlas "job start of ${SLURM_JOB_ID:-?} not registered"
exit 0
