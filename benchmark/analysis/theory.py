"""The two-layer linear network of Kumar et al. (ICLR 2022), simulated: LP vs FT vs LP-FT out of distribution.

Model f(x) = vᵀBx with B ∈ R^{k×d}, v ∈ R^k; ground truth y = v*ᵀB*x (B* with orthonormal rows, ‖v*‖ = 1, noiseless
regression, squared loss). The ID training inputs span an m-dimensional subspace S (m < d); OOD inputs are
N(0, I_d), so the OOD error of any (v, B) is exactly ‖Bᵀv − B*ᵀv*‖², and since ‖B*ᵀv*‖ = 1 it is also the
error relative to the label variance. The pretrained features are B₀ = B* + ε·E with E random of unit
Frobenius norm.

- Theorem 3.3: every gradient step of FT moves the rows of B inside S (∂L/∂B = v·(Xᵀr/n)ᵀ and the rows of X lie in
  S), so B's component on S⊥ stays at B₀'s while the head changes; started from a zero or random head, FT therefore
  cannot fit B*ᵀv* on S⊥ and its OOD error stays bounded away from 0 even as ε → 0 ("feature distortion").
- Theorem 3.5: LP keeps B = B₀ and fits only v; as ε → 0 its head converges to v* and its OOD error to 0.
  LP-FT starts FT at the LP head, where the ID gradient is already O(ε), so B barely moves and it inherits LP's
  OOD error.

Gradient descent with a small step stands in for the paper's gradient flow.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

METHODS = ("LP", "FT", "LP-FT")

# The theorems predict LP's OOD error ~ ε² (log-log slope 2) and FT's flat in ε (slope 0); thresholds well inside
# that gap keep seed noise from flipping the verdict while still failing a configuration that does not separate them.
LP_MIN_SLOPE = 1.0
FT_MAX_SLOPE = 0.5
LP_OVER_FT_AT_SMALLEST_EPS = 0.1


@dataclass(frozen=True)
class TheoryConfig:
    d: int = 40
    k: int = 4
    m: int = 16
    n: int = 64
    epsilons: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 3000
    lr: float = 0.1
    head_init_scale: float = 0.0


@dataclass
class Problem:
    """One draw of ground truth, training subspace and training set; the OOD distribution is N(0, I_d)."""

    true_features: np.ndarray  # B*, k×d, orthonormal rows
    true_head: np.ndarray  # v*, unit norm
    subspace_basis: np.ndarray  # d×m, orthonormal columns spanning S
    inputs: np.ndarray  # n×d, rows in S
    labels: np.ndarray

    @property
    def true_predictor(self) -> np.ndarray:
        return self.true_features.T @ self.true_head

    @property
    def orthogonal_projector(self) -> np.ndarray:
        """P_⊥, the projector onto S⊥."""
        basis = self.subspace_basis
        return np.eye(basis.shape[0]) - basis @ basis.T


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q


def make_problem(d: int, k: int, m: int, n: int, rng: np.random.Generator) -> Problem:
    if not k <= m < d - k:
        raise ValueError(f"need k <= m < d - k (LP identifiable on S, and S⊥ wide enough to hold the k feature "
                         f"directions, as the theorem assumes); got k={k}, m={m}, d={d}")
    if n < m:
        raise ValueError(f"need n >= m so the training inputs span S; got n={n}, m={m}")
    true_features = _orthonormal_columns(rng, d, k).T
    true_head = rng.standard_normal(k)
    true_head /= np.linalg.norm(true_head)
    subspace_basis = _orthonormal_columns(rng, d, m)
    inputs = rng.standard_normal((n, m)) @ subspace_basis.T
    labels = inputs @ (true_features.T @ true_head)
    return Problem(true_features, true_head, subspace_basis, inputs, labels)


def perturb_features(true_features: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    """B₀: B* moved by eps in a random direction, its rows then re-orthonormalised, since the theorem's
    pretrained features, like B*, have orthonormal rows (QR with signs kept, so B₀ stays next to B*)."""
    direction = rng.standard_normal(true_features.shape)
    moved = true_features + eps * direction / np.linalg.norm(direction)
    q, r = np.linalg.qr(moved.T)
    return (q * np.sign(np.diag(r))).T


def distance_up_to_rotation(features: np.ndarray, true_features: np.ndarray) -> float:
    """min over rotations U of ‖B − U B*‖_F, the theorem's ε (features are identified up to a rotation of
    the k-dimensional representation); orthogonal Procrustes."""
    u, _, vt = np.linalg.svd(features @ true_features.T)
    return float(np.linalg.norm(features - u @ vt @ true_features))


def _residual_gradient(problem: Problem, features: np.ndarray, head: np.ndarray) -> np.ndarray:
    """∂L/∂w at w = Bᵀv for L = ‖Xw − y‖²/(2n); every gradient in the model factors through it."""
    residual = problem.inputs @ (features.T @ head) - problem.labels
    return problem.inputs.T @ residual / len(residual)


def train_head(problem: Problem, features: np.ndarray, head: np.ndarray, steps: int, lr: float) -> np.ndarray:
    """LP by gradient descent: B fixed, only v moves."""
    head = head.copy()
    for _ in range(steps):
        head -= lr * (features @ _residual_gradient(problem, features, head))
    return head


def fine_tune(problem: Problem, features: np.ndarray, head: np.ndarray, steps: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """FT by gradient descent on v and B together (simultaneous updates, as a discretised gradient flow)."""
    features, head = features.copy(), head.copy()
    for _ in range(steps):
        grad_w = _residual_gradient(problem, features, head)
        head, features = head - lr * (features @ grad_w), features - lr * np.outer(head, grad_w)
    return features, head


def least_squares_head(problem: Problem, features: np.ndarray) -> np.ndarray:
    """The closed form LP should reach: min-norm least squares on the features Bx of the training set."""
    return np.linalg.lstsq(problem.inputs @ features.T, problem.labels, rcond=None)[0]


def ood_error(problem: Problem, features: np.ndarray, head: np.ndarray) -> float:
    return float(np.sum((features.T @ head - problem.true_predictor) ** 2))


def id_error(problem: Problem, features: np.ndarray, head: np.ndarray) -> float:
    return float(np.mean((problem.inputs @ (features.T @ head) - problem.labels) ** 2))


def _row(problem: Problem, method: str, eps: float, seed: int, pretrained: np.ndarray,
         features: np.ndarray, head: np.ndarray, lp_gap_to_lstsq: float) -> dict:
    error_direction = features.T @ head - problem.true_predictor
    orthogonal = problem.orthogonal_projector
    change = features - pretrained
    return {
        "method": method,
        "eps": eps,
        "seed": seed,
        "ood_error": ood_error(problem, features, head),
        "id_error": id_error(problem, features, head),
        # The OOD error split by where it lives: FT's floor sits on S⊥, where it cannot change B.
        "ood_error_on_S": float(np.sum((error_direction - orthogonal @ error_direction) ** 2)),
        "ood_error_on_S_perp": float(np.sum((orthogonal @ error_direction) ** 2)),
        "feature_change_on_S": float(np.linalg.norm(change - change @ orthogonal)),
        "feature_change_on_S_perp": float(np.linalg.norm(change @ orthogonal)),
        "head_distance_to_true": float(np.linalg.norm(head - problem.true_head)),
        "lp_gd_gap_to_lstsq": lp_gap_to_lstsq,
        # The theorem's ε: B₀'s distance from B* up to a rotation (at most the nominal eps).
        "eps_up_to_rotation": distance_up_to_rotation(pretrained, problem.true_features),
    }


def simulate(d: int = TheoryConfig.d, k: int = TheoryConfig.k, m: int = TheoryConfig.m, n: int = TheoryConfig.n,
             epsilons: Sequence[float] = TheoryConfig.epsilons, seeds: Sequence[int] = TheoryConfig.seeds,
             steps: int = TheoryConfig.steps, lr: float = TheoryConfig.lr,
             head_init_scale: float = TheoryConfig.head_init_scale) -> pd.DataFrame:
    """One row per (eps, seed, method) with OOD/ID error and diagnostics.

    Each seed fixes the ground truth, S and the training set; each eps then draws its own perturbation of B*.
    FT starts from v₀ = head_init_scale·N(0, I_k/k) (0 by default), LP-FT from the LP head; both from B₀.
    """
    rows = []
    for seed in seeds:
        problem_rng = np.random.default_rng([seed, 0])
        problem = make_problem(d, k, m, n, problem_rng)
        for index, eps in enumerate(epsilons):
            rng = np.random.default_rng([seed, 1, index])
            pretrained = perturb_features(problem.true_features, eps, rng)
            initial_head = head_init_scale * rng.standard_normal(k) / np.sqrt(k)

            lp_head = train_head(problem, pretrained, np.zeros(k), steps, lr)
            lp_gap = float(np.linalg.norm(lp_head - least_squares_head(problem, pretrained)))
            rows.append(_row(problem, "LP", eps, seed, pretrained, pretrained, lp_head, lp_gap))

            ft_features, ft_head = fine_tune(problem, pretrained, initial_head, steps, lr)
            rows.append(_row(problem, "FT", eps, seed, pretrained, ft_features, ft_head, np.nan))

            lpft_features, lpft_head = fine_tune(problem, pretrained, lp_head, steps, lr)
            rows.append(_row(problem, "LP-FT", eps, seed, pretrained, lpft_features, lpft_head, np.nan))
    return pd.DataFrame(rows)


def ood_by_eps(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the OOD error; index eps (descending), columns (stat, method)."""
    table = results.groupby(["eps", "method"])["ood_error"].agg(["mean", "std"]).unstack("method")
    return table.sort_index(ascending=False)


def _log_log_slope(eps: np.ndarray, error: np.ndarray) -> float:
    return float(np.polyfit(np.log(eps), np.log(error), 1)[0])


def assess_trend(results: pd.DataFrame) -> dict:
    """Whether the data show the theorem's trend, with the numbers the verdict rests on."""
    means = ood_by_eps(results)["mean"]
    eps = means.index.to_numpy(dtype=float)
    if len(eps) < 2 or np.any(eps <= 0):
        raise ValueError("the trend needs at least two distinct positive epsilons")
    if (means[["LP", "FT"]].to_numpy() <= 0).any():
        raise ValueError("an OOD error of exactly 0 has no place on a log-log trend; use eps > 0")
    smallest = eps.argmin()
    lp_slope = _log_log_slope(eps, means["LP"].to_numpy())
    ft_slope = _log_log_slope(eps, means["FT"].to_numpy())
    lp_over_ft = float(means["LP"].iloc[smallest] / means["FT"].iloc[smallest])
    return {
        "lp_slope": lp_slope,
        "ft_slope": ft_slope,
        "smallest_eps": float(eps[smallest]),
        "lp_over_ft_at_smallest_eps": lp_over_ft,
        "lp_vanishes": lp_slope >= LP_MIN_SLOPE,
        "ft_bounded_away": ft_slope <= FT_MAX_SLOPE,
        "lp_far_below_ft": lp_over_ft <= LP_OVER_FT_AT_SMALLEST_EPS,
        "holds": lp_slope >= LP_MIN_SLOPE and ft_slope <= FT_MAX_SLOPE and lp_over_ft <= LP_OVER_FT_AT_SMALLEST_EPS,
    }


def summarize(results: pd.DataFrame) -> str:
    trend = assess_trend(results)
    means = ood_by_eps(results)["mean"]
    lines = ["OOD error (mean over seeds; relative to ‖B*ᵀv*‖² = 1):",
             "eps        " + "".join(f"{method:>12}" for method in METHODS)]
    for eps, row in means.iterrows():
        lines.append(f"{eps:<11.4g}" + "".join(f"{row[method]:>12.3e}" for method in METHODS))
    lines.append(
        f"log-log slope of OOD error vs eps: LP {trend['lp_slope']:.2f} (theory 2), FT {trend['ft_slope']:.2f} (theory 0); "
        f"LP/FT at eps={trend['smallest_eps']:g}: {trend['lp_over_ft_at_smallest_eps']:.2e}")
    lp_worst_gap = results.loc[results["method"] == "LP", "lp_gd_gap_to_lstsq"].max()
    lines.append(f"LP by gradient descent vs closed-form least squares: max |v_gd - v_lstsq| = {lp_worst_gap:.1e}")
    if trend["holds"]:
        lines.append("Trend of Kumar et al. Thms 3.3/3.5 holds: LP's OOD error vanishes as eps -> 0 while FT's stays "
                     "bounded away from zero.")
    else:
        failures = [text for key, text in (
            ("lp_vanishes", f"LP's OOD error does not shrink with eps (slope {trend['lp_slope']:.2f} < {LP_MIN_SLOPE})"),
            ("ft_bounded_away", f"FT's OOD error shrinks with eps (slope {trend['ft_slope']:.2f} > {FT_MAX_SLOPE})"),
            ("lp_far_below_ft", f"LP is not far below FT at the smallest eps "
                                f"(ratio {trend['lp_over_ft_at_smallest_eps']:.2g} > {LP_OVER_FT_AT_SMALLEST_EPS})"),
        ) if not trend[key]]
        lines.append("Trend of Kumar et al. Thms 3.3/3.5 NOT shown by this configuration: " + "; ".join(failures) + ".")
    return "\n".join(lines)


def plot_ood_error(results: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = ood_by_eps(results)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method in METHODS:
        ax.errorbar(table.index, table[("mean", method)], yerr=table[("std", method)].fillna(0),
                    marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ε = ‖B₀ − B*‖ (Frobenius)")
    ax.set_ylabel("OOD error ‖Bᵀv − B*ᵀv*‖²")
    ax.set_title("Two-layer linear network (Kumar et al. 2022)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_theory_report(out_dir: str | Path, **config) -> str:
    """Run `simulate(**config)`, write theory.csv and theory.png into out_dir, return the text summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = simulate(**config)
    results.to_csv(out_dir / "theory.csv", index=False)
    plot_ood_error(results, out_dir / "theory.png")
    return summarize(results)


def add_theory_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `lpft-bench theory`; every one defaults to TheoryConfig."""
    parser.add_argument("--out", default="results/theory", help="directory for theory.csv and theory.png")
    for field in fields(TheoryConfig):
        default = getattr(TheoryConfig, field.name)
        option = "--" + field.name.replace("_", "-")
        if isinstance(default, tuple):
            parser.add_argument(option, dest=field.name, nargs="+", type=type(default[0]), default=None,
                                help=f"default: {' '.join(map(str, default))}")
        else:
            parser.add_argument(option, dest=field.name, type=type(default), default=None, help=f"default: {default}")


def main_theory(args: argparse.Namespace) -> str:
    """Entry point of `lpft-bench theory`: runs the simulation with the given overrides and prints the summary."""
    overrides = {name: getattr(args, name) for name in asdict(TheoryConfig()) if getattr(args, name, None) is not None}
    summary = write_theory_report(args.out, **overrides)
    print(summary)
    print(f"wrote {Path(args.out) / 'theory.csv'} and {Path(args.out) / 'theory.png'}")
    return summary
