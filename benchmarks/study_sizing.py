"""Wall time of the original study (six experiments, ``augs3`` fine-tuned from ``augmentations2_small_lr``)
on N GPUs, each experiment a Ray job on one GPU (README, "The study on a cluster").

The model: an experiment costs ``start-up + steps x step seconds + checkpoints x checkpoint seconds``
(steps and checkpoints from the resolved configs of ``conf/base/parameters_train.yml``); a
fine-tuned experiment starts when its parent has finished; a free GPU takes the ready experiment
with the longest chain still behind it (the order Ray meets when the parents' nodes are submitted
first). With ``--workers k`` each experiment trains on k GPUs (multi-worker) at ``--efficiency``.

Step seconds are measured elsewhere: ``benchmarks/seed_step_cost.py`` measures the seed model's
step on this CPU and gives the V100 estimate (1,000 steps at batch 8 in about 5 to 14 min, i.e.
0.3 to 0.84 s per step), the defaults here. On your GPUs, time a few hundred steps of one
experiment (MLflow's ``train/images_per_sec_overall`` / batch size) and pass ``--step-seconds``.

    ./dev.sh python benchmarks/study_sizing.py [--gpus 1 2 3 6] [--step-seconds 0.3 0.84]
        [--checkpoint-seconds 30] [--startup-seconds 60] [--workers 1] [--efficiency 0.9]
"""
from __future__ import annotations

import argparse
import heapq
from pathlib import Path

import yaml

from urban_detection.detection.config import resolve_experiments

REPO = Path(__file__).resolve().parents[1]


def study_configs(group: str = "study") -> dict[str, dict]:
    train = yaml.safe_load((REPO / "conf/base/parameters_train.yml").read_text())["train"]
    train["experiments"] = group
    return resolve_experiments(train)


def job_seconds(cfg: dict, step_s: float, checkpoint_s: float, startup_s: float, workers: int, efficiency: float) -> float:
    steps, every = cfg["train"]["steps"], cfg["train"]["checkpoint_every"]
    speedup = 1.0 if workers <= 1 else workers * efficiency
    return startup_s + steps * step_s / speedup + (steps // every) * checkpoint_s


def chain_below(name: str, configs: dict, cost: dict) -> float:
    """The longest run of experiments that cannot start before ``name`` ends, ``name`` included."""
    children = [c for c, cfg in configs.items() if cfg.get("parent") == name]
    return cost[name] + max((chain_below(c, configs, cost) for c in children), default=0.0)


def wall_time(configs: dict, cost: dict, slots: int) -> tuple[float, list[tuple[str, float, float]]]:
    """List scheduling on ``slots`` job slots: (wall seconds, [(experiment, start, end)])."""
    done: dict[str, float] = {}
    free = [0.0] * slots
    pending = dict(configs)
    plan = []
    while pending:
        slot_free = heapq.heappop(free)

        def start(n: str) -> float:  # when n could start on this slot (never before its parent's end)
            parent = pending[n].get("parent")
            if parent in pending:
                return float("inf")
            return max(slot_free, done.get(parent, 0.0))

        name = min(pending, key=lambda n: (start(n), -chain_below(n, configs, cost), n))
        begin = start(name)
        pending.pop(name)
        done[name] = begin + cost[name]
        heapq.heappush(free, done[name])
        plan.append((name, begin, done[name]))
    return max(done.values()), plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", default="study")
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 3, 6])
    ap.add_argument("--step-seconds", type=float, nargs="+", default=[0.3, 0.84],
                    help="seconds per training step on one GPU (one value, or a low and a high estimate)")
    ap.add_argument("--checkpoint-seconds", type=float, default=30.0,
                    help="validation loss and COCO scoring at each checkpoint")
    ap.add_argument("--startup-seconds", type=float, default=60.0,
                    help="Ray job start: worker, TensorFlow import, model build, input pipeline")
    ap.add_argument("--workers", type=int, default=1, help="GPUs per experiment (multi-worker training)")
    ap.add_argument("--efficiency", type=float, default=0.9, help="multi-worker scaling efficiency")
    args = ap.parse_args()

    configs = study_configs(args.group)
    print(f"{args.group}: " + ", ".join(f"{n} ({c['train']['steps']} steps" + (f", after {c['parent']})" if c.get("parent")
                                                                           else ")") for n, c in configs.items()))
    print(f"per job: {args.startup_seconds:.0f} s start-up + steps x step s + checkpoints x {args.checkpoint_seconds:.0f} s; "
          f"{args.workers} GPU(s) per experiment" + (f" at {args.efficiency:.0%} scaling" if args.workers > 1 else ""))
    print(f"\n{'GPUs':>5} " + " ".join(f"{f'{s:g} s/step':>14}" for s in args.step_seconds) + "   order (first estimate)")
    for gpus in args.gpus:
        slots = max(1, gpus // args.workers)
        cells, plan = [], []
        for i, step_s in enumerate(args.step_seconds):
            cost = {n: job_seconds(c, step_s, args.checkpoint_seconds, args.startup_seconds, args.workers,
                                   args.efficiency) for n, c in configs.items()}
            wall, p = wall_time(configs, cost, slots)
            cells.append(f"{wall / 3600:11.1f} h ")
            plan = p if i == 0 else plan
        order = "; ".join(f"{n} {s / 3600:.1f}-{e / 3600:.1f} h" for n, s, e in plan)
        print(f"{gpus:>5} " + " ".join(f"{c:>14}" for c in cells) + f"   {order}")
    serial = sum(job_seconds(c, args.step_seconds[0], args.checkpoint_seconds, args.startup_seconds, 1, 1.0)
                 for c in configs.values())
    print(f"\none after the other on one GPU (the run without train.ray_address): {serial / 3600:.1f} h at "
          f"{args.step_seconds[0]:g} s/step; the chain augmentations2_small_lr -> augs3 bounds any cluster")


if __name__ == "__main__":
    main()
