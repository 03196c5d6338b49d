#!/bin/bash
# The real NVML and RAPL paths on a machine with an NVIDIA GPU, read-only: nothing here sets a power
# limit, a clock or a mode. Takes ~85 s. Needs, beside this script in DIR: `wattlas-collector` and
# `collector-tests` (the collector's unit-test binary), both stripped release builds, and python3 with
# pynvml and torch. Writes DIR's results to $OUT (default /tmp/gpu-check): log.txt and run.tgz
# (the collector's spool, pynvml's reference counter every 200 ms, a 100-ms nvidia-smi log).
# Then, here: scripts/gpu-check/compare.sh RUN.tgz (ingests the spool and the log into a scratch
# database and compares job energies with NVML's own counter as pynvml read it).
D=$(cd "$(dirname "$0")" && pwd); OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1; set -x
nvidia-smi; uname -a; lscpu | head -20
ls -la /sys/class/powercap/ 2>&1
for z in /sys/class/powercap/*/; do [ -e "$z/name" ] && echo "$z $(cat "$z/name") $(cat "$z/energy_uj" 2>&1)"; done
"$D/collector-tests" --ignored --nocapture nvml 2>&1 | tail -20
python3 "$D/ref.py" 80 /tmp/ref.csv & R=$!
nvidia-smi --query-gpu=timestamp,name,pci.bus_id,index,power.draw,power.draw.instant,power.limit,enforced.power.limit,utilization.gpu,memory.used,temperature.gpu,clocks.sm \
  --format=csv -lms 100 > /tmp/smi.csv & S=$!
sleep 1
"$D/wattlas-collector" run --server http://127.0.0.1:9 --token x --node gpu-check --source nvml \
  --run-seconds 70 --spool-dir /tmp/spool > /tmp/collector.log 2>&1 & C=$!
sleep 10; python3 "$D/load.py" 20; sleep 22
wait $C; echo "collector exit $?"; kill $S; wait $R
grep -v "server unreachable" /tmp/collector.log | head -30
tar czf "$OUT/run.tgz" -C /tmp spool ref.csv smi.csv collector.log
