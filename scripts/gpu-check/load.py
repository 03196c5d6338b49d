# A GPU load with a known shape: bf16 matrix products for N seconds, then half duty for N seconds.
import sys, time, torch
n = float(sys.argv[1])
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
t0 = time.time()
while time.time() - t0 < n:
    for _ in range(20): c = a @ b
    torch.cuda.synchronize()
t1 = time.time()
while time.time() - t1 < n:
    s = time.time()
    while time.time() - s < 0.5:
        for _ in range(5): c = a @ b
        torch.cuda.synchronize()
    time.sleep(0.5)
print("load done", time.time() - t0)
