#!/usr/bin/env bash
# Slurm MailProg (slurm.conf: MailProg=/etc/slurm/mailprog.sh), in the manner of Slurm's own smail/seff:
# Slurm calls it as `mailprog.sh -s "Slurm Job_id=123 Name=train Ended, Run time 00:10:02, COMPLETED,
# ExitCode 0" user`. For an ended job it appends what the job's energy was (`wattlas-collector job show`,
# read with a staff user's API token from /etc/wattlas/mail-token) to the mail, then hands it to mail(1).
# Jobs mail only where users ask for it (`sbatch --mail-type=END`); the site can default it in a
# job_submit plugin. Never keeps the mail back: without an answer from Wattlas it goes out as Slurm wrote it.
set -u
export PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
[ -r /etc/wattlas/slurm.env ] && . /etc/wattlas/slurm.env
export WATTLAS_SERVER=${WATTLAS_SERVER:-http://wattlas.example:8080}
export WATTLAS_TOKEN=${WATTLAS_MAIL_TOKEN:-$(cat /etc/wattlas/mail-token 2>/dev/null)}
collector=${WATTLAS_COLLECTOR:-/usr/local/bin/wattlas-collector}
mail=${WATTLAS_MAIL:-/usr/bin/mail}
subject=""
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in -s) subject=${2:-}; shift 2 ;; *) shift ;; esac
done
# "Slurm Job_id=123 ...", "Slurm Array Task job_id=4_1 (5) ...": the id as sacct writes it. An array's
# summary (4_*) names no one job.
id=$(printf '%s' "$subject" | sed -n 's/.*[Jj]ob_id=\([^ ,]*\).*/\1/p')
case "$subject" in
  *Ended* | *Failed* | *Cancelled* | *Timeout* | *Preempted*) ;;
  *) id="" ;;
esac
case "$id" in *'*'*) id="" ;; esac
{
  if [ -n "$id" ]; then
    # Give the node's last samples a moment to arrive.
    sleep 5
    timeout 20 "$collector" job show "$id" 2>&1 || echo "(Wattlas did not answer for job $id)"
  fi
} | "$mail" "${args[@]}"
