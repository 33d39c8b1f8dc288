"""DAS speed: pairs/s of alignment steps and seconds per DAS run.

    python benchmarks/das_speed.py --out runs/bench            # trains the d=20 models first if needed
    python benchmarks/das_speed.py --archs gru --skip-full     # only the step timings

Step timings: one DAS optimisation step at batch 512 (rotate, swap, rotate back, run the cached
continuation, backward, Adam) on cached site states, median over many repeats with the q25-q75
range (these machines have bursts of 10-100x slowness). The cache itself (states of every pair,
computed once) is timed separately. A full run is `numvars.align.das` with its defaults
(10k/1k/1k pairs, the map's default schedule), Up-Down count, k = d/2. CPU uses one thread;
CUDA is timed too when a GPU is visible.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import markdown  # noqa: E402

from numvars import models  # noqa: E402
from numvars.align import das  # noqa: E402
from numvars.align.intervention import Intervention  # noqa: E402
from numvars.align.maps import block_masks, make_map  # noqa: E402
from numvars.align.search import step_loss  # noqa: E402
from numvars.align.sites import cache, get_site  # noqa: E402
from numvars.config import from_mapping  # noqa: E402
from numvars.models import ARCHS, PAPER_ARCHS  # noqa: E402
from numvars.programs import make_pairs  # noqa: E402
from numvars.train import train  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trained_model(arch: str, out: Path, device: str):
    cfg = from_mapping({"arch": arch, "out": str(out), "device": device})
    run = train(cfg, progress=False)
    return models.load(run.run_dir), cfg.make_task()


def step_timings(model, task, device: torch.device, n_pairs: int, batch: int, repeats: int, warmup: int) -> dict:
    model = model.to(device).eval().requires_grad_(False)
    site = get_site(model)
    t0 = time.perf_counter()
    pairs = make_pairs(task, "up_down", ("count",), n_pairs, seed=0)
    pairs_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = cache(site, pairs.to(device))
    _sync(device)
    cache_s = time.perf_counter() - t0
    intervention = Intervention(site, make_map("orthogonal", site.size, 0).to(device),
                                block_masks(site.size, None, 1).to(device))
    opt = torch.optim.Adam(intervention.map.parameters(), lr=3e-3)
    times, gen = [], torch.Generator().manual_seed(0)
    for i in range(warmup + repeats):
        idx = torch.randint(n_pairs, (batch,), generator=gen).to(device)
        _sync(device)
        t0 = time.perf_counter()
        with parametrize.cached():                  # as the fit loop does: the rotation once per step
            value = step_loss(intervention, pairs.select(idx))
            opt.zero_grad(set_to_none=True)
            value.backward()
        opt.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return {"site": site.name, "device": device.type, "batch": batch, "step_ms": 1e3 * q50,
            "range": f"{1e3 * q25:.1f}-{1e3 * q75:.1f}", "pairs_per_s": batch / q50,
            "make_pairs_s": pairs_s, "cache_s": cache_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=list(PAPER_ARCHS), choices=ARCHS)
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--pairs", type=int, default=12_000)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--skip-full", action="store_true", help="skip the full DAS runs")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)"
          + (f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU") + "\n")
    rows, full = [], []
    for arch in args.archs:
        model, task = trained_model(arch, args.out, "cpu")
        for dev in devices:
            rows.append({"arch": arch, **step_timings(model, task, dev, args.pairs, args.batch, args.repeats,
                                                      args.warmup)})
            if not args.skip_full:
                r = das(model, task, "up_down", "count", seed=0, device=dev.type)
                full.append({"arch": arch, "device": dev.type, "seconds": r.seconds, "epochs": r.epochs,
                             "iia": r.iia})
    print(f"## DAS steps (Up-Down count, k = d/2, median of {args.repeats}; q25-q75)\n")
    print(markdown(rows, [("arch", "arch", ""), ("site", "site", ""), ("device", "device", ""),
                          ("batch", "batch", "d"), ("step_ms", "ms/step", ".1f"), ("range", "[q25-q75]", ""),
                          ("pairs_per_s", "pairs/s", ",.0f"), ("make_pairs_s", f"make {args.pairs} pairs s", ".2f"),
                          ("cache_s", "cache states s", ".2f")]))
    if full:
        print("\n## Full DAS runs (defaults: 10k/1k/1k pairs, the orthogonal map's schedule)\n")
        print(markdown(full, [("arch", "arch", ""), ("device", "device", ""), ("seconds", "seconds", ".1f"),
                              ("epochs", "epochs", "d"), ("iia", "test IIA", ".3f")]))


if __name__ == "__main__":
    main()
