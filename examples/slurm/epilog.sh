#!/usr/bin/env bash
# Slurm Epilog (runs as root on every node of a job after it ends): records the job's end, and resets
# the power cap of the GPUs the prolog capped (only those: a job without a cap leaves the limits as
# they are). A node that dies runs no epilog: `wattlas-collector slurm sync` on the controller ends
# such jobs at the time Slurm recorded.
set -u
# slurmd runs its scripts without PATH.
export PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
[ -r /etc/wattlas/slurm.env ] && . /etc/wattlas/slurm.env
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_TOKEN:-$(cat /etc/wattlas/token 2>/dev/null)}
collector=${WATTLAS_COLLECTOR:-/usr/local/bin/wattlas-collector}
capped=${WATTLAS_STATE_DIR:-/run/wattlas}/capped-${SLURM_JOB_ID:-none}
if [ -f "$capped" ]; then
  if "$collector" cap reset --gpus "$(cat "$capped")" >/dev/null; then
    rm -f "$capped"
  else
    logger -t wattlas "power cap of ${SLURM_JOB_ID:-?} not reset"
  fi
fi
timeout 15 "$collector" job end || logger -t wattlas "job end of ${SLURM_JOB_ID:-?} not registered"
exit 0
