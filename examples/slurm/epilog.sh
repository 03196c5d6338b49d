#!/usr/bin/env bash
# Slurm Epilog (runs as root on every node of a job, after it ends): records the job's end.
set -u
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_TOKEN:-$(cat /etc/wattlas/token 2>/dev/null)}
/usr/local/bin/wattlas-collector job end || logger -t wattlas "job end of ${SLURM_JOB_ID:-?} not registered"
exit 0
