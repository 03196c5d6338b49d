# Independent reference: NVML's own energy counter and power read by pynvml (not Wattlas code), every 200 ms.
import sys, time, pynvml
pynvml.nvmlInit()
n = pynvml.nvmlDeviceGetCount()
hs = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
end = time.time() + float(sys.argv[1])
with open(sys.argv[2], "w") as f:
    f.write("unix_s,gpu,energy_mj,power_mw,limit_mw,default_limit_mw\n")
    while time.time() < end:
        t = time.time()
        for i, h in enumerate(hs):
            f.write(f"{t:.6f},{i},{pynvml.nvmlDeviceGetTotalEnergyConsumption(h)},{pynvml.nvmlDeviceGetPowerUsage(h)},"
                    f"{pynvml.nvmlDeviceGetEnforcedPowerLimit(h)},{pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h)}\n")
        f.flush()
        time.sleep(0.2)
