"""Time a training step of scripts/device/demixer-2spk-gpu.yaml's model in bf16 and in fp32 on the GPU and print
AMP=true|false for the faster (scripts/device/run_2spk.sh passes it on as train.amp)."""

import sys
import time

import torch

sys.path.insert(0, "src")
from demixer.models.checkpoint import build_model  # noqa: E402
from demixer.training import load_config  # noqa: E402

cfg = load_config("scripts/device/demixer-2spk-gpu.yaml", [])
torch.backends.cudnn.benchmark = True
model = build_model(cfg.model.architecture, cfg.model.config).cuda()
opt = torch.optim.Adam(model.parameters(), 1e-4)
x = torch.randn(cfg.data.batch_size, 1, int(cfg.data.segment * model.sample_rate), device="cuda")
best = None
for amp in (True, False):
    for i in range(15):
        if i == 5:
            torch.cuda.synchronize()
            t = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = model(x).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    dt = (time.time() - t) / 10
    print(f"amp={amp}: {dt * 1000:.1f} ms a step (batch {cfg.data.batch_size})", flush=True)
    if best is None or dt < best[1]:
        best = (amp, dt)
print("AMP=" + ("true" if best[0] else "false"))
