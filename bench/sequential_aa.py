"""A/A experiments looked at continuously: false-positive rates of the confidence sequences vs the
fixed-horizon interval, and the sample size to a decision for a true 5-point win-rate difference.

    .venv/bin/python bench/sequential_aa.py [--experiments 2000] [--max-n 1000] [--every 10]

Each A/A experiment is looked at after every `--every` observations up to `--max-n`; it counts as a false
positive if any look shows an interval that excludes "no difference". Three kinds of observation:
pairwise votes between equal arms (win / loss / tie 40/40/20 %, counted 1 / 0 / 1/2, against 0.5), and the
difference of thumbs-up shares of two arms with a 50/50 split (shares 50 % and 90 %). Then the same looks on
votes where the first arm wins 5 points more often (win rate 0.55) up to `--power-max-n` observations.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import numpy as np

from serve.sequential import CSConfig, Trace, diff_trace, fixed_halfwidth, mean_trace

CHUNK = 250
Bands = dict[str, tuple[np.ndarray, np.ndarray]]


def _votes(rng: np.random.Generator, shape: tuple[int, int], win: float) -> np.ndarray:
    """Votes for the first arm: win `win`, tie 0.2, loss the rest (mean = win + 0.1)."""
    return rng.choice(np.array([1.0, 0.5, 0.0]), size=shape, p=[win, 0.2, 0.8 - win])


def _chunks(total: int) -> Iterator[int]:
    for start in range(0, total, CHUNK):
        yield min(CHUNK, total - start)


def _first_decision(low: np.ndarray, high: np.ndarray, null: float, looks: np.ndarray) -> np.ndarray:
    """Per experiment the observation count at the first look that decides (0: never)."""
    hit = (low[:, looks] > null) | (high[:, looks] < null)
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), looks[first] + 1, 0)


def _fixed(tr: Trace, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = fixed_halfwidth(tr.n, np.maximum(sd, 1e-12))
    return tr.estimate - half, tr.estimate + half


def _vote_traces(x: np.ndarray, cfg: CSConfig, bounded: CSConfig) -> Bands:
    gavi, exact = mean_trace(x, cfg), mean_trace(x, bounded)
    n = gavi.n
    sd = np.sqrt(np.maximum(np.cumsum(x * x, axis=1) / n - gavi.estimate**2, 0) * n / np.maximum(n - 1, 1))
    return {"sequence (gavi)": (gavi.low, gavi.high), "sequence (bounded)": (exact.low, exact.high),
            "fixed horizon": _fixed(gavi, sd)}


def _thumbs_traces(x: np.ndarray, is_a: np.ndarray, cfg: CSConfig,
                   bounded: CSConfig) -> Bands:
    gavi, exact = diff_trace(x, is_a, cfg), diff_trace(x, is_a, bounded)
    na, nb = np.cumsum(is_a, axis=1), np.cumsum(~is_a, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.cumsum(x * is_a, axis=1) / na
        pb = np.cumsum(x * ~is_a, axis=1) / nb
        sd = np.sqrt(gavi.n * (pa * (1 - pa) / np.maximum(na - 1, 1) + pb * (1 - pb) / np.maximum(nb - 1, 1)))
    low, high = _fixed(gavi, sd)
    ok = (na >= 2) & (nb >= 2)
    return {"sequence (gavi)": (gavi.low, gavi.high), "sequence (bounded)": (exact.low, exact.high),
            "fixed horizon": (np.where(ok, low, -1.0), np.where(ok, high, 1.0))}


def false_positive_rates(make: Callable[[np.random.Generator, int], Bands],
                         null: float, experiments: int, looks: np.ndarray, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    hits: dict[str, int] = {}
    for size in _chunks(experiments):
        for name, (low, high) in make(rng, size).items():
            hits[name] = hits.get(name, 0) + int((_first_decision(low, high, null, looks) > 0).sum())
    return {name: count / experiments for name, count in hits.items()}


def sample_size_to_decision(experiments: int, max_n: int, every: int, cfg: CSConfig,
                            seed: int) -> dict[str, float]:
    """Votes with win rate 0.55 for the first arm: share decided by `max_n`, mean and median count at the
    first deciding look, share of decisions for the better arm."""
    rng = np.random.default_rng(seed)
    looks = np.arange(every - 1, max_n, every)
    firsts, right = [], 0
    for size in _chunks(experiments):
        tr = mean_trace(_votes(rng, (size, max_n), 0.45), cfg)
        ahead, behind = tr.low[:, looks] > 0.5, tr.high[:, looks] < 0.5
        hit = ahead | behind
        first = np.argmax(hit, axis=1)
        decided = hit.any(axis=1)
        firsts.append(looks[first[decided]] + 1)
        right += int(ahead[np.arange(size), first][decided].sum())
    n = np.concatenate(firsts)
    return {"decided": n.size / experiments, "mean_n": float(n.mean()) if n.size else float("nan"),
            "median_n": float(np.median(n)) if n.size else float("nan"), "right_arm": right / max(n.size, 1)}


def fixed_design_n(power: float = 0.8) -> float:
    """Votes a fixed-horizon test needs for `power` at win rate 0.55 (tie 20 %, sd 0.444), for scale."""
    from scipy import stats

    sd = np.sqrt(0.45 + 0.25 * 0.2 - 0.55**2)
    return float(((stats.norm.ppf(0.975) + stats.norm.ppf(power)) * sd / 0.05) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--max-n", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--power-max-n", type=int, default=4000)
    parser.add_argument("--tuning-n", type=float, default=1000.0)
    args = parser.parse_args()
    cfg = CSConfig(tuning_n=args.tuning_n)
    bounded = CSConfig(tuning_n=args.tuning_n, method="bounded")
    looks = np.arange(args.every - 1, args.max_n, args.every)
    print(f"{args.experiments} A/A experiments, a look after every {args.every} observations up to "
          f"{args.max_n} ({looks.size} looks), alpha 0.05, tuning n {args.tuning_n:g}")

    def thumbs(share: float) -> Callable[[np.random.Generator, int], Bands]:
        return lambda rng, k: _thumbs_traces((rng.random((k, args.max_n)) < share).astype(float),
                                             rng.random((k, args.max_n)) < 0.5, cfg, bounded)

    cases = {
        "votes, win rate vs 0.5": (lambda rng, k: _vote_traces(_votes(rng, (k, args.max_n), 0.4), cfg,
                                                               bounded), 0.5),
        "thumbs 50% vs 50%": (thumbs(0.5), 0.0),
        "thumbs 90% vs 90%": (thumbs(0.9), 0.0),
    }
    for seed, (label, (make, null)) in enumerate(cases.items()):
        start = time.perf_counter()
        rates = false_positive_rates(make, null, args.experiments, looks, seed)
        shown = ", ".join(f"{name} {rate:.1%}" for name, rate in rates.items())
        print(f"  false positives, {label}: {shown}  ({time.perf_counter() - start:.1f} s)")
    for name, c in (("gavi", cfg), ("bounded", bounded)):
        start = time.perf_counter()
        out = sample_size_to_decision(args.experiments, args.power_max_n, args.every, c, seed=99)
        print(f"  true win rate 0.55 ({name}): decided by {args.power_max_n} in {out['decided']:.1%}, "
              f"mean n at decision {out['mean_n']:.0f} (median {out['median_n']:.0f}), "
              f"for the better arm {out['right_arm']:.1%}  ({time.perf_counter() - start:.1f} s)")
    print(f"  (a fixed-horizon test looked at once needs {fixed_design_n():.0f} votes for 80% power)")


if __name__ == "__main__":
    main()
