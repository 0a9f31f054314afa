"""Simulate a configuration's training shards outside Snakemake, balanced across versions at every moment.

The files are the ones rule ``simulate`` writes (same library call, same metadata), but in an order that leaves a
usable, version-balanced data set whenever the run is stopped: each phase's val shards first, then train shard 0 of
every version, shard 1 of every version, ... Shards already present are skipped, so re-running resumes.

    python scripts/simulate_round_robin.py config/cpu_pretrain.yaml --phases initial finetune --deadline-utc 16:45
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import yaml

from astrorim.io.shards import write_shard
from astrorim.plan import shard_plan
from astrorim.sim import simulate


def ordered_specs(config: dict, phases: list[str]) -> list:
    """Val shards of each phase, then train shards interleaved across versions by shard index."""
    plan = [s for s in shard_plan(config) if s.phase in phases]
    return sorted(plan, key=lambda s: (phases.index(s.phase), s.split != "val", s.shard, s.version))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--phases", nargs="+", default=["initial", "finetune"])
    parser.add_argument("--deadline-utc", help="HH:MM (UTC today): start no shard after this time")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    sim = config["simulation"]
    deadline = None
    if args.deadline_utc:
        hh, mm = map(int, args.deadline_utc.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    specs = ordered_specs(config, args.phases)
    done_pairs, t0 = 0, time.perf_counter()
    for i, spec in enumerate(specs):
        out = Path(config["data_dir"]) / spec.relative_path()
        if out.exists():
            continue
        if deadline is not None and dt.datetime.now(dt.timezone.utc) >= deadline:
            print(f"deadline {args.deadline_utc} UTC reached before shard {i + 1}/{len(specs)}", flush=True)
            break
        phase_cfg = sim["phases"][spec.phase]
        store = phase_cfg.get("store_diagnostics", sim.get("store_diagnostics", False))
        if isinstance(store, list):
            store = spec.split in store
        t = time.perf_counter()
        batch = simulate(spec.version, spec.n, spec.seed, phase=spec.phase, split=spec.split,
                         start_index=spec.start_index, npix=int(config["npix"]))
        meta = {"version": spec.version, "phase": spec.phase, "split": spec.split, "seed": spec.seed,
                "start_index": spec.start_index}
        out.parent.mkdir(parents=True, exist_ok=True)
        write_shard(out, batch, meta, store_diagnostics=bool(store))
        done_pairs += spec.n
        el = time.perf_counter() - t0
        print(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} shard {i + 1}/{len(specs)} {spec.relative_path()} "
              f"n={spec.n} {1e3 * (time.perf_counter() - t) / spec.n:.1f} ms/pair; {done_pairs} pairs in "
              f"{el:.0f} s ({done_pairs / el:.1f} pairs/s)", flush=True)


if __name__ == "__main__":
    main()
