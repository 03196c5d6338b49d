#!/usr/bin/env bash
# Slurm Epilog (runs as root on every node of a job, after it ends): records the job's end.
set -u
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_TOKEN:-$(cat /etc/wattlas/token 2>/dev/null)}
# Whatever the prolog capped goes back to the GPUs' default limit for the next job.
if [ -n "${SLURM_JOB_GPUS:-}" ]; then
  /usr/local/bin/wattlas-collector cap reset --gpus "$SLURM_JOB_GPUS" >/dev/null \
    || logger -t wattlas "power cap of ${SLURM_JOB_ID:-?} not reset"
fi
/usr/local/bin/wattlas-collector job end || logger -t wattlas "job end of ${SLURM_JOB_ID:-?} not registered"
exit 0
