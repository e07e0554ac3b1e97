import argparse

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from lpft_bench.analysis.theory import (
    add_theory_arguments,
    fine_tune,
    main_theory,
    make_problem,
    ood_by_eps,
    perturb_features,
    simulate,
    summarize,
    train_head,
    write_theory_report,
)

SMALL = dict(d=12, k=2, m=5, n=20, epsilons=(0.1, 0.01), seeds=(0,), steps=1500, lr=0.1)


@pytest.fixture
def small_problem():
    rng = np.random.default_rng(0)
    problem = make_problem(d=12, k=2, m=5, n=20, rng=rng)
    return problem, perturb_features(problem.true_features, 0.1, rng)


@pytest.fixture(scope="module")
def default_results():
    return simulate()


def test_lp_gradient_descent_matches_closed_form_least_squares(small_problem):
    problem, pretrained = small_problem
    head = train_head(problem, pretrained, np.zeros(2), steps=1500, lr=0.1)
    expected = np.linalg.lstsq(problem.inputs @ pretrained.T, problem.labels, rcond=None)[0]
    np.testing.assert_allclose(head, expected, rtol=0, atol=1e-9)

    reported_gaps = simulate(**SMALL).query("method == 'LP'")["lp_gd_gap_to_lstsq"]
    assert (reported_gaps < 1e-9).all()


def test_fine_tuning_leaves_features_on_orthogonal_complement_of_training_subspace_unchanged(small_problem):
    problem, pretrained = small_problem
    head = 0.5 * np.random.default_rng(1).standard_normal(2)
    tuned, _ = fine_tune(problem, pretrained, head, steps=500, lr=0.1)
    orthogonal = problem.orthogonal_projector

    np.testing.assert_allclose(tuned @ orthogonal, pretrained @ orthogonal, rtol=0, atol=1e-12)
    # Without movement inside S the invariant would hold trivially.
    assert np.linalg.norm((tuned - pretrained) @ (np.eye(12) - orthogonal)) > 1e-2


def test_default_config_shows_lp_vanishing_and_ft_bounded_away(default_results):
    means = ood_by_eps(default_results)["mean"]
    smallest, largest = means.index.min(), means.index.max()

    assert means.loc[smallest, "LP"] < 0.1 * means.loc[smallest, "FT"]
    assert means.loc[smallest, "LP"] < 1e-3 * means.loc[largest, "LP"]
    assert means.loc[smallest, "FT"] > 0.5 * means.loc[largest, "FT"]
    assert means.loc[smallest, "FT"] > 1e-2
    assert "holds" in summarize(default_results)


def test_summary_says_so_when_the_trend_is_not_there():
    # Without training steps LP keeps its zero head, so its OOD error cannot shrink with eps.
    summary = summarize(simulate(**{**SMALL, "steps": 0}))
    assert "NOT shown" in summary and "LP's OOD error does not shrink" in summary


def test_write_theory_report_writes_csv_and_valid_png(tmp_path):
    summary = write_theory_report(tmp_path, **SMALL)

    csv = (tmp_path / "theory.csv").read_text().splitlines()
    assert csv[0].startswith("method,eps,seed,ood_error,id_error")
    assert len(csv) == 1 + len(SMALL["epsilons"]) * len(SMALL["seeds"]) * 3
    png = tmp_path / "theory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 100 and width > 100
    assert "OOD error" in summary


def test_main_theory_applies_command_line_overrides(tmp_path):
    parser = argparse.ArgumentParser()
    add_theory_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--d", "12", "--k", "2", "--m", "5", "--n", "20",
                              "--epsilons", "0.1", "0.01", "--seeds", "0", "--steps", "1500"])
    main_theory(args)

    results = pd.read_csv(tmp_path / "theory.csv")
    assert sorted(results["eps"].unique()) == [0.01, 0.1]
    assert list(results["seed"].unique()) == [0]
