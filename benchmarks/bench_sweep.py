"""Sweep throughput and accuracy: the naive tellurium loop vs our exact path vs our fast path, in one session.

    python benchmarks/bench_sweep.py --n 1000 --workers 2 --n-accuracy 50

N parameter sets (Latin hypercube over parameter-table ranges around the maturation-arrest preset) are
each pre-equilibrated to their untreated steady state and then given 20 mg twice daily for 180 days,
simulated for 365 days with daily output.

(a) naive: tellurium, model loaded once; per sample resetAll(), set values, pre-equilibrate the same
    way as ra_model (1000-d blocks until the last year changes < 1e-6), then arm the dose event and
    give the t = 0 dose by hand (a plain reset() keeps the event's exhausted counters: no doses; a
    resetAll() fires the t = 0 dose before new values are set). Every sample is checked to get 360 doses.
(b) exact: ``run_sweep(fast=False, workers=W)``: warm worker processes, every dose simulated, rtol 1e-6
    and atol 1e-13 (SWEEP_RTOL, SWEEP_ATOL), on the split model of ``ra_model.engines.splitpath`` (everything
    but the germ-cell chain in libroadrunner, recorded every half hour; the chain compiled). With
    ``--whole-exact`` the whole model runs in libroadrunner instead (``split=False``).
(c) fast: ``run_sweep(fast=True, workers=W)``: the split model of ``ra_model.engines.fastpath`` (retinoid core in
    libroadrunner dose by dose until its periodic state can be extrapolated, that orbit repeated, the
    washout exact; the germ line in compiled code). Its numba kernels are compiled (or loaded from
    numba's cache) before timing, as the naive loop gets a warm-up run.

The three take turns on ``--blocks`` blocks of samples (naive, exact, fast on block 1, then block 2, ...),
so a slow spell of the (shared, noisy) machine falls on all three alike; each path's time is its sum
over the blocks, worker-pool start-up included.

Accuracy is measured on the first ``--n-accuracy`` samples against a reference at rtol 1e-10 / atol
1e-14: the maximum relative error of every observable over all output times (relative to the
reference value, floored at 1e-6 of the observable's largest value in that run and at ABS_FLOOR in the
observable's own unit), and the errors of the sweep metrics. ABS_FLOOR = 1e-9 is the floor the COPASI
agreement test uses: values below it are numerically zero (the solver's absolute tolerance is 1e-12
nmol or Mcell per state) and six orders of magnitude below the motile-sperm detection limit.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time

import numpy as np
import pandas as pd

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.engines.fastpath import fast_engine, simulate_fast
from ra_model.engines.simulate import LEDGER_SPECIES, MAX_PREEQ_BLOCKS, PREEQ_BLOCK_D, PREEQ_FLOOR, PREEQ_RTOL, simulate
from ra_model.engines.splitpath import SplitEngine, simulate_split
from ra_model.model import columns as C
from ra_model.model.phenotypes import get_phenotype
from ra_model.model.source import ANTIMONY_FILE, default_sbml, model_dir
from ra_model.studies.design import default_ranges, make_design
from ra_model.studies.metrics import (
    BUILTIN_METRICS,
    peak_ejaculate_concentration,
    responder,
    time_to_first_motile_sperm_d,
)
from ra_model.studies.sweep import run_sweep, worker_engine

PHENOTYPE = "maturation_arrest"
REGIMEN = "20 mg bid for 180 d"
T_END_D = 365.0
DOSE_MG, INTERVAL_H, N_DOSES = 20.0, 12.0, 360
PARAMETERS = [
    "stra6_expr",
    "aldh1a_expr",
    "cyp26_expr",
    "F_fasted",
    "CL_iso",
    "testis_penetration",
    "k_iso_t",
    "Kd_rar_at",
    "f_free_ra",
    "K_sperm_ra",
    "Vmax_duct_loss",
    "k_cyp26_deg",
]
METRICS = {k: BUILTIN_METRICS[k] for k in ("peak_ejaculate_concentration", "time_to_first_motile_sperm_d", "responder")}


def draw_samples(n: int, seed: int) -> pd.DataFrame:
    ranges = default_ranges(PARAMETERS)
    # the three causes of RA starvation stay around the maturation-arrest preset (0.3, 0.15, 5)
    around = {"stra6_expr": (0.1, 0.6), "aldh1a_expr": (0.05, 0.4), "cyp26_expr": (2.0, 10.0)}
    ranges = [
        type(r)(name=r.name, lower=around[r.name][0], upper=around[r.name][1], log=False) if r.name in around else r
        for r in ranges
    ]
    return make_design(ranges, design="latin", n=n, seed=seed)


# --------------------------------------------------------------------------- (a) the naive tellurium loop
class NaiveLoop:
    def __init__(self) -> None:
        import tellurium as te

        self.r = te.loada((model_dir() / ANTIMONY_FILE).read_text(encoding="utf-8"))
        self.preset = get_phenotype(PHENOTYPE)
        self.species = list(self.r.model.getFloatingSpeciesIds())
        self.selections = ["time", "doses_given", *(o.model_id for o in C.OBSERVABLES)]
        self.defaults = {p: self.r[p] for p in self.r.model.getGlobalParameterIds() if p not in self.rules()}

    def rules(self) -> set[str]:
        return set(self.r.getAssignmentRuleIds())

    def run(self, values: dict[str, float]) -> pd.DataFrame:
        r = self.r
        r.resetAll()
        params = self.preset.resolve(self.defaults) | values
        for name, value in params.items():
            if self.defaults.get(name) != value:
                r[name] = value
        ids = [s for s in self.species if s not in LEDGER_SPECIES]
        for _ in range(MAX_PREEQ_BLOCKS):
            t0 = r.model.getTime()
            t1 = t0 + PREEQ_BLOCK_D * 24
            out = r.simulate(times=[t0, t1 - 365 * 24, t1], selections=ids)
            if self._steady(out):
                break
        r["Eliminated"] = 0.0
        r["dose_mg"], r["dose_interval_h"], r["n_doses"] = DOSE_MG, INTERVAL_H, float(N_DOSES)
        r["Gut_iso"] = r["Gut_iso"] + DOSE_MG * r["nmol_per_mg_iso"]  # the t = 0 dose, by hand
        r["doses_given"], r["t_next_dose"] = 1.0, INTERVAL_H
        data = r.simulate(0, T_END_D * 24, int(T_END_D) + 1, selections=self.selections)
        frame = pd.DataFrame(np.asarray(data), columns=[C.TIME_D, C.DOSES_GIVEN, *(o.column for o in C.OBSERVABLES)])
        frame[C.TIME_D] /= 24
        frame[C.MOTILE_SPERM_PRESENT] = frame[C.MOTILE_CONCENTRATION] >= r["motile_detection_limit"]
        frame.attrs["motile_detection_limit_M_per_mL"] = r["motile_detection_limit"]
        return frame

    @staticmethod
    def _steady(out: np.ndarray) -> bool:
        a = np.asarray(out)
        before, after = a[1], a[2]
        scale = np.maximum(np.maximum(np.abs(before), np.abs(after)), PREEQ_FLOOR)
        return bool(np.max(np.abs(after - before) / scale) < PREEQ_RTOL)

    def plain_reset_doses(self) -> int:
        """The trap: after one run, reset() keeps the event's counters, so the next run gets no doses."""
        r = self.r
        r.resetAll()
        r["dose_mg"], r["dose_interval_h"], r["n_doses"], r["t_next_dose"] = DOSE_MG, INTERVAL_H, 4.0, 0.5
        r.simulate(0, 48, 49)
        r.reset()
        out = r.simulate(0, 48, 49, selections=["time", "doses_given"])
        return int(np.asarray(out)[-1, 1])


def naive_metrics(table: pd.DataFrame) -> dict[str, object]:
    return {k: f(table) for k, f in METRICS.items()}


# --------------------------------------------------------------------------- accuracy
#: Absolute floor of the relative-error denominator, in each observable's unit (see the module docstring).
ABS_FLOOR = 1e-9


def max_rel_error(table: pd.DataFrame, ref: pd.DataFrame) -> dict[str, float]:
    errors = {}
    for o in C.OBSERVABLES:
        x = table[o.column].to_numpy(dtype=float)
        y = ref[o.column].to_numpy(dtype=float)
        floor = max(1e-6 * float(np.max(np.abs(y))), ABS_FLOOR)
        errors[o.column] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), floor)))
    return errors


def metric_errors(tables: list[pd.DataFrame], refs: list[pd.DataFrame]) -> dict[str, float]:
    peak = [
        abs(peak_ejaculate_concentration(t) / peak_ejaculate_concentration(r) - 1)
        for t, r in zip(tables, refs, strict=True)
    ]
    times = []
    for t, r in zip(tables, refs, strict=True):
        a, b = time_to_first_motile_sperm_d(t), time_to_first_motile_sperm_d(r)
        times.append(0.0 if (math.isnan(a) and math.isnan(b)) else abs(a - b))  # nan if only one is nan
    calls = sum(responder(t) != responder(r) for t, r in zip(tables, refs, strict=True))
    return {"peak_rel_max": max(peak), "time_abs_max_d": max(times), "responder_mismatches": calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="parameter sets (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for our paths (default 2)")
    parser.add_argument("--n-accuracy", type=int, default=50, help="samples checked against the reference")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=5, help="blocks the three paths take turns on (default 5)")
    parser.add_argument("--whole-exact", action="store_true", help="exact path on the whole model (split=False)")
    args = parser.parse_args()
    logging.getLogger("roadrunner").setLevel(logging.ERROR)
    samples = draw_samples(args.n, args.seed)
    values = samples.drop(columns="sample_id").to_dict(orient="records")
    print(f"{args.n} samples, {PHENOTYPE}, {REGIMEN}, {T_END_D:g} d daily output; cores {os.cpu_count()}")

    naive = NaiveLoop()
    print(f"trap check: a second run after plain reset() got {naive.plain_reset_doses()} of 4 doses")
    naive.run(values[0])  # warm-up, not timed
    simulate_fast(PHENOTYPE, REGIMEN, t_end_d=T_END_D, overrides=values[0], engine=fast_engine())  # warm-up

    split = not args.whole_exact
    print(f"exact path: {'split model' if split else 'whole model'}")

    def timed_sweep(block: pd.DataFrame, fast: bool) -> tuple[pd.DataFrame, float]:
        start = time.perf_counter()
        table = run_sweep(
            block,
            metrics=METRICS,
            phenotype=PHENOTYPE,
            regimen=REGIMEN,
            t_end_d=T_END_D,
            workers=args.workers,
            fast=fast,
            split=split,
            progress=False,
        )
        return table, time.perf_counter() - start

    # The three paths take turns on blocks of samples, so a slow spell of this shared machine falls
    # on all of them alike; each path's time is the sum over blocks (pool start-up included).
    naive_tables: list[pd.DataFrame | None] = []
    naive_failed = 0
    t_naive = t_exact = t_fast = 0.0
    exact_parts, fast_parts = [], []
    bounds = np.linspace(0, args.n, args.blocks + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t = time.perf_counter()
        for v in values[lo:hi]:
            try:
                table = naive.run(v)
            except RuntimeError:
                naive_failed += 1
                naive_tables.append(None)
                continue
            if int(table[C.DOSES_GIVEN].iloc[-1]) != N_DOSES:
                raise SystemExit(f"naive loop gave {table[C.DOSES_GIVEN].iloc[-1]} doses, not {N_DOSES}")
            naive_tables.append(table)
        t_naive += time.perf_counter() - t
        block = samples.iloc[lo:hi]
        part, secs = timed_sweep(block, False)
        exact_parts.append(part)
        t_exact += secs
        part, secs = timed_sweep(block, True)
        fast_parts.append(part)
        t_fast += secs
        print(
            f"  samples {lo}-{hi}: naive {t_naive:.1f} s, exact {t_exact:.1f} s, fast {t_fast:.1f} s (cumulative)",
            flush=True,
        )
    exact = pd.concat(exact_parts, ignore_index=True)
    fast = pd.concat(fast_parts, ignore_index=True)
    print(
        f"(a) naive tellurium loop (1 process): {t_naive:.1f} s, {args.n / t_naive:.2f} samples/s, "
        f"every run got {N_DOSES} doses; {naive_failed} failed"
    )
    for name, secs, table in (("(b) exact", t_exact, exact), ("(c) fast", t_fast, fast)):
        print(
            f"{name} run_sweep, {args.workers} workers: {secs:.1f} s, {args.n / secs:.2f} samples/s, "
            f"{t_naive / secs:.1f}x naive; {int((table['status'] != 'ok').sum())} failed"
        )
    calls = int((exact["responder"] != fast["responder"]).sum())
    peak_diff = np.nanmax(np.abs(fast["peak_ejaculate_concentration"] / exact["peak_ejaculate_concentration"] - 1))
    time_diff = np.nanmax(np.abs(fast["time_to_first_motile_sperm_d"] - exact["time_to_first_motile_sperm_d"]))
    print(
        f"responder calls exact vs fast over all {args.n}: {calls} differ; "
        f"peak concentration max rel diff {peak_diff:.2e}; time to first motile sperm max abs diff {time_diff:.2f} d"
    )

    k = min(args.n_accuracy, args.n)
    ref_engine = Engine(default_sbml(), options=SolverOptions(rtol=1e-10, atol=1e-14))
    refs, exacts, fasts, naives = [], [], [], []
    for v, nt in zip(values[:k], naive_tables[:k], strict=True):
        if nt is None:
            continue
        refs.append(simulate(PHENOTYPE, REGIMEN, t_end_d=T_END_D, overrides=v, engine=ref_engine))
        engine = worker_engine(split=split)
        run = simulate_split if isinstance(engine, SplitEngine) else simulate
        exacts.append(run(PHENOTYPE, REGIMEN, t_end_d=T_END_D, overrides=v, engine=engine))  # type: ignore[arg-type]
        fasts.append(simulate_fast(PHENOTYPE, REGIMEN, t_end_d=T_END_D, overrides=v, engine=fast_engine()))
        naives.append(nt)
    print(f"\naccuracy on {len(refs)} samples vs rtol 1e-10 reference (max relative error over all times):")
    rows = {}
    for name, tables in (("naive", naives), ("exact", exacts), ("fast", fasts)):
        errs = [max_rel_error(t, r) for t, r in zip(tables, refs, strict=True)]
        rows[name] = {col: max(e[col] for e in errs) for col in errs[0]}
        rows[name] |= metric_errors(tables, refs)
    report = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.2e}".format, "display.width", 200):
        print(report.to_string())
    obs = [o.column for o in C.OBSERVABLES]
    print(
        f"\nsummary: naive {args.n / t_naive:.2f}/s | exact {args.n / t_exact:.2f}/s "
        f"({t_naive / t_exact:.1f}x, max obs err {report.loc[obs, 'exact'].max():.1e}) | fast {args.n / t_fast:.2f}/s "
        f"({t_naive / t_fast:.1f}x, peak err {report.loc['peak_rel_max', 'fast']:.1e}, time err "
        f"{report.loc['time_abs_max_d', 'fast']:.2f} d, "
        f"responder mismatches {int(report.loc['responder_mismatches', 'fast'])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
