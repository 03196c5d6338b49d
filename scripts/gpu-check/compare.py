"""The comparison for compare.sh: WORK holds spool/, ref.csv and smi.csv; stdlib only."""
import csv, datetime as dt, gzip, json, os, subprocess, sys, urllib.request

work, collector = sys.argv[1], sys.argv[2]
api = os.environ["WATTLAS"]


def call(path, body=None, token="gpu-check"):
    req = urllib.request.Request(api + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))


call("/sites", {"name": "lab", "timezone": "UTC"})
node, node_token, times, gpus = None, None, [], set()
for name in sorted(os.listdir(f"{work}/spool")):
    batch = json.load(gzip.open(f"{work}/spool/{name}"))
    if batch.pop("kind") != "gpu":
        continue
    if node is None:
        node = batch["node"]
        node_token = call("/nodes", {"name": node, "site": "lab"})["token"]
    call("/ingest/gpu", batch, node_token)
    times += [s["time"] for s in batch["samples"]]
    gpus |= {s["gpu"] for s in batch["samples"]}


def parse(text):
    """RFC 3339 in UTC as the server writes it, nanoseconds cut to microseconds."""
    whole, _, frac = text.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(whole + "." + (frac + "000000")[:6] + "+00:00")


subprocess.run([collector, "import", "nvidia-smi", f"{work}/smi.csv", "--node", "gpu-check-smi", "--site", "lab",
                "--timezone", "UTC", "--server", api[:-len("/api/v1")]],
               env={**os.environ, "WATTLAS_TOKEN": "gpu-check"}, check=True, stdout=subprocess.DEVNULL)

ref = {}
for r in csv.DictReader(open(f"{work}/ref.csv")):
    ref.setdefault(int(r["gpu"]), []).append((float(r["unix_s"]), int(r["energy_mj"])))


def counter_kwh(a, b):
    """NVML's counter over [a, b] (interpolated between pynvml's readings), over the part it covers."""
    total, covered = 0.0, 0.0
    for rows in ref.values():
        lo, hi = max(a, rows[0][0]), min(b, rows[-1][0])
        at = lambda t: next(e0 + (e1 - e0) * (t - t0) / (t1 - t0)
                            for (t0, e0), (t1, e1) in zip(rows, rows[1:]) if t0 <= t <= t1)
        total += (at(hi) - at(lo)) / 3.6e9
        covered = hi - lo
    return total, covered


# One window inside the collector's samples and pynvml's readings, in whole seconds; a job over it on
# each node (the collector's and the nvidia-smi log's).
ref_lo = max(rows[0][0] for rows in ref.values())
ref_hi = min(rows[-1][0] for rows in ref.values())
lo = dt.datetime.fromtimestamp(max(parse(min(times)).timestamp(), ref_lo) + 1, dt.timezone.utc).replace(microsecond=0)
hi = dt.datetime.fromtimestamp(min(parse(max(times)).timestamp(), ref_hi), dt.timezone.utc).replace(microsecond=0)
for job, on in (("collector", node), ("nvidia-smi-log", "gpu-check-smi")):
    call("/jobs", {"id": job, "user": "gpu-check", "name": job, "site": "lab", "start": lo.isoformat(),
                   "end": hi.isoformat(), "tags": {}, "allocations": [{"node": on, "gpus": sorted(gpus)}]})
    j = call(f"/jobs/{job}")
    ref_kwh, covered = counter_kwh(lo.timestamp(), hi.timestamp())
    print(f"{job}: {j['duration_s']:.1f} s, {j['samples']} samples, method {j['energy_method']}: "
          f"Wattlas {j['gpu_energy_kwh']:.7f} kWh; NVML counter {ref_kwh:.7f} kWh; "
          f"ratio {j['gpu_energy_kwh'] / ref_kwh:.5f}")
