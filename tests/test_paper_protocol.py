"""Paper mode against the authors' released code (AnanyaKumar/transfer_learning), item by item."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lpft_bench.strategies.linear_probe import PROBE_SETTINGS, fit_logistic_path


def _features(seed=0, n=90, dim=6, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)) * 2
    # Columns on very different scales: scalar and per-feature standardisation then disagree.
    x = (centres[y] + rng.normal(size=(n, dim))) * np.array([1, 10, 0.1, 5, 1, 50])[:dim] + 3
    return x, y


def _official_probe(train_x, train_y, val_x, val_y, Cs):
    """log_reg_sk.py's normalize_features, test_log_reg_warm_starting and inv_normalize_weights, verbatim in effect."""
    mean, std = np.mean(train_x), np.std(train_x)
    clf = LogisticRegression(random_state=0, warm_start=True, max_iter=200)
    best_acc, best = -1.0, None
    for C in Cs:
        clf.C = C
        clf.fit((train_x - mean) / std, train_y)
        acc = np.mean(clf.predict((val_x - mean) / std) == val_y)
        if acc > best_acc:
            best_acc, best = acc, (C, clf.coef_.copy(), clf.intercept_.copy())
    C, coef, intercept = best
    return C, coef / std, intercept - coef @ (mean / std * np.ones(coef.shape[1]))


def test_paper_probe_is_the_official_scalar_standardisation_and_max_iter():
    train_x, train_y = _features(0)
    val_x, val_y = _features(1)
    Cs = tuple(float(c) for c in np.logspace(-7, 2, 20))
    C, weight, bias = _official_probe(train_x, train_y, val_x, val_y, Cs)
    probe = fit_logistic_path(train_x, train_y, val_x, val_y, Cs, 3, settings=PROBE_SETTINGS["paper"])
    assert probe.C == C
    np.testing.assert_allclose(probe.weight, weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probe.bias, bias, rtol=1e-4, atol=1e-5)
    per_feature = fit_logistic_path(train_x, train_y, val_x, val_y, Cs, 3,
                                    settings=PROBE_SETTINGS["clean"])
    assert not np.allclose(per_feature.weight, probe.weight, rtol=1e-2)


def test_clean_probe_breaks_accuracy_ties_by_validation_log_loss_paper_keeps_the_smaller_C():
    # Separable data: validation accuracy saturates at 100% over many Cs.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    x = np.eye(3)[y] * 4 + rng.normal(scale=0.3, size=(90, 3))
    Cs = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    paper = fit_logistic_path(x, y, x, y, Cs, 3, settings=PROBE_SETTINGS["paper"])
    clean = fit_logistic_path(x, y, x, y, Cs, 3, settings=PROBE_SETTINGS["clean"])
    tied = [p["C"] for p in clean.path if p["val_acc"] == max(q["val_acc"] for q in clean.path)]
    assert len(tied) > 1
    assert paper.C == tied[0]
    losses = {p["C"]: p["val_log_loss"] for p in clean.path}
    assert clean.C == min(tied, key=losses.get) and clean.C != tied[0]


def test_unknown_standardisation_is_an_error():
    x, y = _features(0)
    settings = PROBE_SETTINGS["paper"].__class__("columnwise", 200, "smaller-C", "eval-transform")
    with pytest.raises(ValueError, match="standardise"):
        fit_logistic_path(x, y, x, y, (1.0,), 3, settings=settings)
