"""GPU check: grouped models are exact on the device, and how much faster they are.

    python benchmarks/gpu_check.py                        # on a GPU (about 3-5 minutes)
    python benchmarks/gpu_check.py --device cpu --quick   # small sizes, to try the script anywhere

1. Checks on the device: a GroupedRNN member's logits equal its solo model's (GRU and LSTM, with
   and without TF32); a few training steps of a group equal each member's solo steps (train's loop:
   same batches, same dropout stream); `train_group` equals `train` end to end on tiny runs; and
   `das_many` equals separate `das` runs.
2. Timings (median over repeats after warm-up, with torch.cuda.synchronize; q25-q75 shown, since
   shared machines have slow bursts): ms per optimiser step of one solo d=20 GRU and of groups of
   G GRUs at batch 128 (models per second = G / step time), the per-member evaluation an epoch
   costs, one DAS step and batched DAS steps (pairs per second).
3. A projection of the paper preset's wall time on one such device from these timings.

Writes gpu_check.json and gpu_check.md to $OUT when it is set, else prints both. A time budget
(--budget-s) skips what would not fit rather than overrun.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.nn.utils import parametrize

from numvars import models
from numvars.align import DASOptions, DASRequest, das, das_many
from numvars.align.batched import _Groups, _step as das_group_step
from numvars.align.search import parse_variables, prepare, step_loss
from numvars.programs import get_program
from numvars.align.sites import frozen
from numvars.config import from_mapping
from numvars.evaluate import trial_accuracy
from numvars.models import GroupedRNN
from numvars.jobs.costs import Costs
from numvars.reproduce.presets import ALIGNMENTS, PRESETS, grid
from numvars.train import Batches, lr_factor, next_token_loss, train
from numvars.train_group import _Member, _step as group_train_step, train_group


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int) -> dict:
    """Median ms of fn() with its q25-q75 range."""
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return {"ms": float(q50), "range": f"{q25:.2f}-{q75:.2f}"}


def config(arch="gru", d_model=20, **kw):
    return from_mapping({"arch": arch, "d_model": d_model, "task": "multi_object", **kw})


# --- 1. checks -----------------------------------------------------------------------------------

def check_forward(device, arch: str, tf32: bool, size: int) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    cfg = config(arch).model
    solo = [models.build(cfg, seed=s).to(device).eval() for s in range(size)]
    group = GroupedRNN.from_models(solo).eval()
    tokens = torch.randint(0, cfg.vocab_size, (size, 64, 40), device=device)
    with torch.no_grad():
        logits = group(tokens)
        diff = max(float((logits[i] - m(tokens[i])).abs().max()) for i, m in enumerate(solo))
    return {"check": f"forward {arch} G={size} tf32={tf32}", "max_abs_diff": diff, "ok": diff < 1e-3 if tf32 else
            diff < 1e-4}


def check_train_steps(device, size: int, steps: int) -> dict:
    """`steps` steps of a group (train_group's own step) against each member's solo steps (train's loop)."""
    cfgs = [config(seed=s, device=device.type) for s in range(size)]
    task, tc = cfgs[0].make_task(), cfgs[0].train
    members = [_Member(c, task, device) for c in cfgs]
    group = GroupedRNN.from_models([models.build(c.model, seed=c.seed).to(device) for c in cfgs]).train()
    opt = torch.optim.Adam(group.parameters(), lr=tc.lr * lr_factor(0, tc))
    for s in range(steps):
        group_train_step(group, opt, members, s, tc)
    diff = 0.0
    for i, c in enumerate(cfgs):
        model = models.build(c.model, seed=c.seed).to(device).train()
        torch.manual_seed(c.seed)
        solo_opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(solo_opt, lambda k: lr_factor(k, tc))
        batches = Batches(task, c.train, device)
        for s in range(steps):
            loss = next_token_loss(model, batches(s)[0])
            solo_opt.zero_grad(set_to_none=True)
            loss.backward()
            solo_opt.step()
            sched.step()
        mine = group.member_state(i)
        diff = max(diff, max(float((mine[k] - v).abs().max()) for k, v in model.state_dict().items()))
    return {"check": f"{steps} training steps G={size} (d=20 GRU, batch 128)", "max_abs_diff": diff,
            "ok": diff < 1e-3}


def check_train_group(device) -> dict:
    from numvars import io
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(d_model=8, max_epochs=3, steps_per_epoch=2, eval_per_count=2, device=device.type)
        group = train_group([config(seed=s, out=f"{tmp}/g", **kw) for s in (0, 1)], progress=False)
        diff, same = 0.0, True
        for s, g in zip((0, 1), group):
            alone = train(config(seed=s, out=f"{tmp}/a", **kw), progress=False)
            a, b = io.load_tensors(alone.run_dir / "model.safetensors"), io.load_tensors(g.run_dir / "model.safetensors")
            diff = max(diff, max(float((a[k] - b[k]).abs().max()) for k in a))
            same &= {**alone.summary, "seconds": 0} == {**g.summary, "seconds": 0}
    return {"check": "train_group = train (2 tiny runs, 3 epochs)", "max_abs_diff": diff, "ok": diff < 1e-3 and same}


def check_das_many(device, n_train: int) -> dict:
    cfg = config(d_model=12).model
    nets = [models.build(cfg, seed=s) for s in (0, 1)]
    opts = dict(n_train=n_train, n_val=128, n_test=128, batch_size=128, max_epochs=2, device=device.type)
    requests = [DASRequest(nets[0], config().make_task(), DASOptions(**opts, seed=0)),
                DASRequest(nets[1], config().make_task(), DASOptions(program="up_up", variable="demo_count", **opts,
                                                                       seed=1))]
    batched, diff, same = das_many(requests), 0.0, True
    for r, b in zip(requests, batched):
        a = das(r.model, r.task, options=r.options)
        diff = max(diff, float((a.matrix - b.matrix).abs().max()))
        same &= a.iia == b.iia and bool((a.pairs["correct"] == b.pairs["correct"]).all())
    return {"check": "das_many = das (2 alignments, 2 epochs)", "max_abs_diff": diff, "ok": same}


# --- 2. timings ----------------------------------------------------------------------------------

def solo_step(device, arch: str, d_model: int, batch: int, repeats: int, warmup: int) -> dict:
    cfg = config(arch, d_model, batch_size=batch)
    model = models.build(cfg.model, seed=0).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens = Batches(cfg.make_task(), cfg.train, device)(0)[0]

    def step():
        loss = next_token_loss(model, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"what": f"solo {arch}", "d": d_model, "G": 1, **timed(step, device, repeats, warmup)}


def group_step(device, arch: str, d_model: int, size: int, batch: int, repeats: int, warmup: int,
               exact_dropout: bool = True) -> dict:
    """train_group's own step (padding, per-member dropout streams, summed losses, Adam) on fixed batches;
    exact_dropout=False draws one dropout mask for the whole group instead."""
    cfgs = [config(arch, d_model, batch_size=batch, seed=s) for s in range(size)]
    task, tc = cfgs[0].make_task(), cfgs[0].train
    members = [SimpleNamespace(batches=lambda step, fixed=Batches(task, c.train, device)(0): fixed,
                               dropout=torch.Generator(device).manual_seed(c.seed) if exact_dropout else None)
               for c in cfgs]
    group = GroupedRNN.from_models([models.build(c.model, seed=c.seed).to(device) for c in cfgs]).train()
    opt = torch.optim.Adam(group.parameters(), lr=1e-3)
    row = timed(lambda: group_train_step(group, opt, members, 0, tc), device, repeats, warmup)
    return {"what": f"group {arch}" + ("" if exact_dropout else " (one dropout draw)"), "d": d_model, "G": size, **row}


def eval_cost(device, repeats: int) -> dict:
    """What train_group spends per member per epoch: extract it, trial_accuracy (15 trials per count)."""
    cfg = config()
    group = GroupedRNN.from_models([models.build(cfg.model, seed=s).to(device) for s in range(4)])
    task = cfg.make_task()
    counts = range(cfg.task.min_count, cfg.task.max_count + 1)
    row = timed(lambda: trial_accuracy(group.member(1), task, counts, 15, device=device), device, repeats, 2)
    return {"what": "extract + evaluate one member", "d": 20, "G": 1, **row}


def das_timings(device, sizes: list[int], batch: int, n_train: int, repeats: int, warmup: int) -> list[dict]:
    """One alignment's DAS step (as das_speed.py times it) and das_many's step for G alignments."""
    cfg = config()
    task = cfg.make_task()
    nets = [models.build(cfg.model, seed=s) for s in range(max(sizes))]
    opts = dict(n_train=n_train, n_val=64, n_test=64, batch_size=batch, device=device.type)
    gen, rows = torch.Generator().manual_seed(0), []

    def draw(pairs):
        return pairs.select(torch.randint(n_train, (batch,), generator=gen).to(device))
    with ExitStack() as stack:
        for net in nets:
            stack.enter_context(frozen(net, device.type))
        items = []
        for i, net in enumerate(nets):
            o, program = DASOptions(**opts, seed=i), get_program("up_down")
            items.append(prepare(net, task, program, parse_variables(program, o.variable), o))
        p, trains = items[0], [item.train for item in items]
        opt = torch.optim.Adam(p.align.parameters(), lr=3e-3)
        row = timed(lambda: _das_step(p, draw(trains[0]), opt), device, repeats, warmup)
        rows.append({"what": "das (one alignment)", "G": 1, "batch": batch, **row,
                     "pairs_per_s": batch / row["ms"] * 1e3})
        for size in sizes:
            group = _Groups(nets)(list(range(size)))
            opt = torch.optim.Adam([{"params": list(item.align.parameters()), "lr": 3e-3} for item in items[:size]])
            row = timed(lambda: das_group_step(group, items[:size], [draw(t) for t in trains[:size]], opt), device,
                        repeats, warmup)
            rows.append({"what": "das_many", "G": size, "batch": batch, **row,
                         "pairs_per_s": size * batch / row["ms"] * 1e3})
    return rows


def _das_step(p, batch, opt) -> None:
    """One optimisation step of one alignment, as `align.fit.optimise` takes it."""
    with parametrize.cached():
        value = step_loss(p.intervention, batch)
        opt.zero_grad(set_to_none=True)
        value.backward()
    opt.step()


# --- 3. projection -------------------------------------------------------------------------------

def project(train_rows: list[dict], das_rows: list[dict], eval_row: dict) -> dict:
    """Seconds the paper preset would take on this device, job after job, grouped and per job."""
    p, costs = PRESETS["paper"], Costs.load()
    solo_ms = next(r["ms"] for r in train_rows if r["what"] == "solo gru")
    groups = [r for r in train_rows if r["what"] == "group gru" and r["d"] == 20]
    das_groups = [r for r in das_rows if r["G"] > 1]
    solo_pairs = next(r for r in das_rows if r["G"] == 1)["pairs_per_s"]
    families: dict = {}
    for spec in grid(p):
        families.setdefault((spec.arch, spec.task, spec.variant, spec.d_model), []).append(spec)
    total = {"grouped": {"train_s": 0.0, "eval_s": 0.0, "das_s": 0.0}, "per_job": {"train_s": 0.0, "eval_s": 0.0,
                                                                                   "das_s": 0.0}}
    for (arch, task, variant, d), specs in families.items():
        slow = 3.0 if arch == "transformer" else 1.0            # a Transformer step costs 2-3x a GRU's (train_speed.py)
        steps = min(costs.criterion_epoch(arch, task), p.train.get("max_epochs", 2000)) * 8
        group_ms = float(np.interp(len(specs), [r["G"] for r in groups], [r["ms"] for r in groups])) if groups else \
            solo_ms * len(specs)
        total["per_job"]["train_s"] += len(specs) * steps * solo_ms * slow / 1e3
        total["grouped"]["train_s"] += (len(specs) * steps * solo_ms * slow if arch == "transformer" else
                                        steps * group_ms) / 1e3
        for t in total.values():
            t["eval_s"] += len(specs) * steps / 8 * eval_row["ms"] / 1e3
        main = d == p.d_model or variant != "default"
        fitted = len(ALIGNMENTS) * len(p.maps) if main else 1
        fitted += ("untrained" in p.controls) * sum(s.seed in p.control_seeds for s in specs) / len(specs) * main
        pairs = len(specs) * fitted * p.das.get("n_train", 10_000) * min(p.das.get("max_epochs", 50),
                                                                          costs.t["das_typical_epochs"])
        bundle = len(specs) * fitted
        rate = float(np.interp(bundle, [r["G"] for r in das_groups], [r["pairs_per_s"] for r in das_groups])) \
            if das_groups and arch != "transformer" else solo_pairs / slow
        total["per_job"]["das_s"] += pairs / (solo_pairs / slow)
        total["grouped"]["das_s"] += pairs / rate
    for t in total.values():
        t["total_s"] = sum(t.values())
    total["assumptions"] = ("typical criterion epochs (numvars/data/job_costs.json) at 8 steps each; a family's group "
                            "step interpolated at its number of seeds, every d at the d=20 cost; Transformer training "
                            "and DAS steps at 3x the GRU's (not grouped); main alignments and the untrained control "
                            "at the preset's n_train for the cost model's typical epochs, bundled per family; not "
                            "included: dynamics checkpoints, full swaps, out-of-range evaluations, sampling pairs")
    return total


# --- report --------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['device_name']} (torch {report['torch']})", "",
             "| check | max abs diff | ok |", "|---|---|---|"]
    lines += [f"| {c['check']} | {c['max_abs_diff']:.2e} | {'yes' if c['ok'] else 'NO'} |" for c in report["checks"]]
    lines += ["", "| training step | d | G | ms/step (median) | q25-q75 | models/s | speed-up vs solo |",
              "|---|---|---|---|---|---|---|"]
    solo = {(r["what"].split()[1], r["d"]): r["ms"] for r in report["train"] if r["what"].startswith("solo")}
    for r in report["train"]:
        base = solo.get((r["what"].split()[1], r["d"])) if r["what"].startswith("group") else None
        speed = f"{r['G'] * base / r['ms']:.1f}x" if base else ""
        lines.append(f"| {r['what']} | {r['d']} | {r['G']} | {r['ms']:.2f} | {r['range']} | "
                     f"{r['G'] * 1e3 / r['ms']:,.0f} | {speed} |")
    lines += ["", "| DAS step | G | batch | ms/step | q25-q75 | pairs/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['G']} | {r['batch']} | {r['ms']:.2f} | {r['range']} | {r['pairs_per_s']:,.0f} |"
              for r in report["das"]]
    if report.get("projection"):
        pr = report["projection"]
        lines += ["", "| paper preset, projected | training min | evaluation min | DAS min | total h |",
                  "|---|---|---|---|---|"]
        lines += [f"| {how} | {pr[how]['train_s'] / 60:.0f} | {pr[how]['eval_s'] / 60:.0f} | {pr[how]['das_s'] / 60:.0f} "
                  f"| {pr[how]['total_s'] / 3600:.2f} |" for how in ("per_job", "grouped")]
        lines += ["", f"Assumptions: {pr['assumptions']}."]
    if report["skipped"]:
        lines += ["", "Skipped (time budget): " + ", ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (to try it on a CPU)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip timings that would start after this")
    args = ap.parse_args(argv)
    device, started = torch.device(args.device), time.perf_counter()
    if device.type == "cpu":
        torch.set_num_threads(1)
    quick = args.quick
    sizes = [2, 4] if quick else [6, 8, 64, 256]
    batch, repeats, warmup = (32, 5, 2) if quick else (128, 30, 5)
    report = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
              "cpu", "torch": torch.__version__, "quick": quick, "checks": [], "train": [], "das": [], "skipped": []}

    def within_budget(name: str) -> bool:
        if time.perf_counter() - started < args.budget_s:
            return True
        report["skipped"].append(name)
        return False

    tf32_modes = [True, False] if device.type == "cuda" else [False]
    for arch in ("gru", "lstm"):
        for tf32 in tf32_modes:
            report["checks"].append(check_forward(device, arch, tf32, 3 if quick else 8))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False   # train's defaults differ: see JSON
    report["checks"] += [check_train_steps(device, 3 if quick else 8, 5), check_train_group(device),
                         check_das_many(device, 256 if quick else 1024)]
    torch.backends.cudnn.allow_tf32 = True            # torch's default for cuDNN (matmul TF32 is off by default)
    report["tf32"] = {"timings": {"cudnn": True, "matmul": False}, "checks": "each forward check says; the rest off"}
    report["train"].append(solo_step(device, "gru", 20, batch, repeats, warmup))
    for size in sizes:
        if within_budget(f"group gru G={size}"):
            report["train"].append(group_step(device, "gru", 20, size, batch, repeats, warmup))
    if within_budget("group gru one dropout draw"):
        report["train"].append(group_step(device, "gru", 20, sizes[-1], batch, repeats, warmup, exact_dropout=False))
    if within_budget("lstm"):
        report["train"] += [solo_step(device, "lstm", 20, batch, repeats, warmup),
                            group_step(device, "lstm", 20, sizes[1], batch, repeats, warmup)]
    if within_budget("d=96"):
        report["train"] += [solo_step(device, "gru", 96, batch, repeats, warmup),
                            group_step(device, "gru", 96, sizes[0], batch, repeats, warmup)]
    eval_row = eval_cost(device, repeats=3 if quick else 10)
    report["train"].append(eval_row)
    if within_budget("das"):
        das_sizes = [2, 4] if quick else [8, 64]
        report["das"] = das_timings(device, das_sizes, 64 if quick else 512, 256 if quick else 4096, repeats, warmup)
    report["projection"] = project(report["train"], report["das"], eval_row) if report["das"] else None
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = markdown(report)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
        (Path(out) / "gpu_check.md").write_text(text)
    print(text)
    if not out:
        print(json.dumps(report, indent=1))
    print(f"{report['seconds']} s")


if __name__ == "__main__":
    main()
