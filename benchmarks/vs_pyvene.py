"""numvars vs pyvene: the same DAS fitted with both tools on the same d = 20 GRU.

    python benchmarks/vs_pyvene.py                        # trains the GRU first (single_object, counts 1..10)
    python benchmarks/vs_pyvene.py --run runs/RUN --epochs 8

Same model, same pairs (Up-Down count, k = d/2), same initial rotation, same batches in the same order, same
optimiser (Adam, constant lr), same objective (cross-entropy of the counterfactual tokens at the scored
positions, teacher-forced) and the same IIA (teacher-forced, every scored token right) on the same
validation and test pairs. Both start from the site's cached states (the base state at t, the source's at u):

- numvars: `Intervention.logits` (rotate, swap, rotate back, continue with the fused GRU), one
  `parametrize.cached()` per step;
- pyvene: `IntervenableModel` with a `RotatedSpaceIntervention` on the output of a seed module whose output
  the GRU continues from. pyvene intervenes on module outputs, and a recurrent state swapped in the output
  of `nn.GRU` would not reach the later steps, so the continuation is teacher-forced from the seed: the
  form of this DAS that pyvene can run. pyvene runs the source through the model too (to collect it).

Reports wall and CPU time per step (median, q25-q75; one torch thread), seconds to the validation plateau
(first epoch within 0.005 of the best validation IIA) and the test IIA of each, and how far the two fitted
rotations end apart. Writes benchmarks/reports/vs_pyvene.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import markdown  # noqa: E402

from numvars.align.intervention import Intervention  # noqa: E402
from numvars.align.maps import block_masks, make_map  # noqa: E402
from numvars.align.sites import cache, frozen, get_site  # noqa: E402
from numvars.config import from_mapping  # noqa: E402
from numvars.programs import make_pairs  # noqa: E402
from numvars.runs import load_run  # noqa: E402
from numvars.train import train  # noqa: E402

REPORTS = Path(__file__).parent / "reports"
MODEL = dict(task="single_object", arch="gru", d_model=20, max_count=10, holdouts="", seed=0)


class Continue(nn.Module):
    """The GRU continued from a state (B, 1, d) that a seed module outputs: pyvene's intervention point."""

    device = property(lambda self: next(self.lm.parameters()).device)

    def __init__(self, lm: nn.Module, d: int):
        super().__init__()
        self.lm, self.seed = lm, nn.Identity()
        self.config = type("Config", (), {"d": d, "to_dict": lambda self: {"d": d}})()

    def forward(self, state, cont):
        return self.lm.run_from(self.seed(state)[:, 0], cont)


def tf_iia(logits: torch.Tensor, pairs) -> float:
    """Teacher-forced IIA: every scored continuation token predicted."""
    right = (logits.argmax(-1) == pairs.cont) | ~pairs.scored
    return float(right.all(1).float().mean())


class Numvars:
    name = "numvars"

    def __init__(self, site, r0, k):
        self.iv = Intervention(site, make_map("orthogonal", site.size, 0), block_masks(site.size, k, 1))
        with torch.no_grad():
            self.iv.map.lin.weight = r0
        self.params = list(self.iv.map.parameters())

    def logits(self, batch):
        return self.iv.logits(batch)

    def step_context(self):
        return parametrize.cached()

    def matrix(self):
        return self.iv.map.matrix.detach().clone()


class Pyvene:
    name = "pyvene"

    def __init__(self, model, r0, k):
        import pyvene as pv
        self.pv = pv
        iv = pv.RotatedSpaceIntervention(embed_dim=r0.shape[0])
        iv.set_interchange_dim(k)
        with torch.no_grad():
            iv.rotate_layer.weight = r0
        config = pv.IntervenableConfig(representations=[pv.RepresentationConfig(
            component="seed.output", unit="pos", max_number_of_units=1, intervention=iv)])
        self.net = pv.IntervenableModel(config, Continue(model, r0.shape[0]))
        self.net.disable_model_gradients()
        self.iv, self.params = iv, list(iv.parameters())

    def logits(self, batch):
        loc = [[[0]] * len(batch)]
        cont = batch.cont[:, :-1]
        # clones: pyvene writes the intervened representation into the module's output in place, and the
        # output of the identity seed is the tensor passed in (without them the cached states drift)
        _, out = self.net({"state": batch.states["base"][:, None].clone(), "cont": cont},
                          [{"state": batch.states["source"][:, None].clone(), "cont": cont}],
                          unit_locations={"sources->base": (loc, loc)})
        return out

    def step_context(self):
        return torch.enable_grad()

    def matrix(self):
        return self.iv.rotate_layer.weight.detach().clone()


def fit(tool, pairs, n_train: int, n_val: int, epochs: int, batch_size: int, lr: float, seed: int) -> dict:
    train_p, val_p = pairs.select(slice(0, n_train)), pairs.select(slice(n_train, n_train + n_val))
    test_p = pairs.select(slice(n_train + n_val, None))
    opt = torch.optim.Adam(tool.params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    walls, cpus, history = [], [], []
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(n_train, generator=gen).split(batch_size):
            batch = train_p.select(idx)
            w0, c0 = time.perf_counter(), time.process_time()
            with tool.step_context():
                logits = tool.logits(batch)
                loss = F.cross_entropy(logits[batch.scored], batch.cont[batch.scored])
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        with torch.no_grad():
            history.append({"epoch": epoch, "val_iia": tf_iia(tool.logits(val_p), val_p),
                            "seconds": float(np.sum(walls))})
    best = max(h["val_iia"] for h in history)
    plateau = next(h for h in history if h["val_iia"] >= best - 0.005)
    with torch.no_grad():
        test_iia = tf_iia(tool.logits(test_p), test_p)
    q = lambda xs, p: float(np.percentile(xs, p))  # noqa: E731
    return {"tool": tool.name, "steps": len(walls), "wall_ms_step": q(walls, 50) * 1e3,
            "wall_ms_q25": q(walls, 25) * 1e3, "wall_ms_q75": q(walls, 75) * 1e3, "cpu_ms_step": q(cpus, 50) * 1e3,
            "plateau_epoch": plateau["epoch"], "plateau_s": plateau["seconds"], "fit_s": history[-1]["seconds"],
            "val_iia": best, "test_iia": test_iia, "history": history, "matrix": tool.matrix()}


def float64_check(model, task, args) -> dict:
    """The same two fits in float64, where float noise no longer moves Adam: how far apart they end (the model
    frozen by the caller)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    model.double()
    try:
        site = get_site(model)
        n = args.n_train + args.n_val + args.n_test
        pairs = cache(site, make_pairs(task, "up_down", ("count",), n, seed=args.seed))
        r0 = make_map("orthogonal", site.size, args.seed).matrix.detach().clone()
        fits = [fit(tool, pairs, args.n_train, args.n_val, args.epochs, args.batch_size, args.lr, args.seed)
                for tool in (Numvars(site, r0, site.size // 2), Pyvene(model, r0, site.size // 2))]
    finally:
        torch.set_default_dtype(before)
        model.float()
    return {"gap": float((fits[0]["matrix"] - fits[1]["matrix"]).abs().max()),
            "val_iia": [f["val_iia"] for f in fits], "test_iia": [f["test_iia"] for f in fits]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a trained d=20 GRU run (default: train one under --out)")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    run = Path(args.run) if args.run else train(from_mapping({**MODEL, "out": args.out}), progress=False).run_dir
    model, task, cfg, _ = load_run(run)
    if cfg.model.arch != "gru":
        raise SystemExit(f"{run} is a {cfg.model.arch}; this benchmark compares DAS on a GRU")
    n = args.n_train + args.n_val + args.n_test
    rows = []
    with frozen(model, "cpu"):
        site = get_site(model)
        pairs = cache(site, make_pairs(task, "up_down", ("count",), n, seed=args.seed))
        d, k = site.size, site.size // 2
        r0 = make_map("orthogonal", d, args.seed).matrix.detach().clone()
        for tool in (Numvars(site, r0, k), Pyvene(model, r0, k)):
            torch.manual_seed(args.seed)
            rows.append(fit(tool, pairs, args.n_train, args.n_val, args.epochs, args.batch_size, args.lr, args.seed))
        check = float64_check(model, task, args)
    gap = float((rows[0].pop("matrix") - rows[1].pop("matrix")).abs().max())
    ratio = rows[1]["wall_ms_step"] / rows[0]["wall_ms_step"]
    cpu_ratio = rows[1]["cpu_ms_step"] / rows[0]["cpu_ms_step"]
    import pyvene
    meta = {"run": run.name, "model": f"{cfg.task.name} GRU d={d}", "k": k, "pairs": [args.n_train, args.n_val,
            args.n_test], "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "threads": 1,
            "torch": torch.__version__, "pyvene": getattr(pyvene, "__version__", "0.1.8"),
            "max_abs_rotation_gap": gap, "pyvene_over_numvars_wall_per_step": ratio,
            "pyvene_over_numvars_cpu_per_step": cpu_ratio, "float64_check": check}
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "vs_pyvene.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, [("tool", "tool", "s"), ("steps", "steps", "d"), ("wall_ms_step", "wall ms/step", ".1f"),
                            ("wall_ms_q25", "q25", ".1f"), ("wall_ms_q75", "q75", ".1f"),
                            ("cpu_ms_step", "CPU ms/step", ".1f"), ("plateau_epoch", "plateau epoch", "d"),
                            ("plateau_s", "s to plateau", ".2f"), ("val_iia", "best val IIA", ".3f"),
                            ("test_iia", "test IIA", ".3f")])
    text = (f"# numvars vs pyvene: the same DAS on one d = {d} GRU\n\n"
            f"`python benchmarks/vs_pyvene.py` — {meta['model']} ({run.name}), Up-Down count, k = {k}; "
            f"{args.n_train}/{args.n_val}/{args.n_test} pairs, {args.epochs} epochs of batches of {args.batch_size}, "
            f"Adam lr {args.lr}, the same initial rotation and batches; one CPU thread; torch {torch.__version__}, "
            f"pyvene {meta['pyvene']}. Both start from the cached site states; pyvene's continuation is "
            f"teacher-forced from a seed module (see the script's docstring).\n\n{table}\n\n"
            f"pyvene takes **{ratio:.1f}×** numvars' wall time per step and {cpu_ratio:.1f}× its CPU time (wall "
            f"time above CPU time means the machine was shared while it ran; the CPU ratio is the steadier one). "
            f"The two fitted rotations end "
            f"{gap:.1e} apart (max absolute entry): "
            + ("the same fit up to float32 noise, which Adam turns into steps of a fraction of lr where a gradient "
               "is near zero; so the validation IIA per epoch (and the epoch kept) can differ by a few pairs while "
               "the test IIA of the final maps stays close. " if gap < 0.05 else "the fits differ; look into it before reading the IIA columns.")
            + f"In float64 (the same fits, untimed) the rotations end {check['gap']:.1e} apart, with best "
            f"validation IIA {check['val_iia'][0]:.3f} and {check['val_iia'][1]:.3f} and test IIA "
            f"{check['test_iia'][0]:.3f} and {check['test_iia'][1]:.3f}: the two tools fit the same DAS.\n")
    (REPORTS / "vs_pyvene.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
