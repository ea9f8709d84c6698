import numpy as np
import pytest

from xscreen.runtime._metrics import choose_threshold, classification_report, report_markdown, roc_auc

LABELS = ["covid", "healthy", "pneumonia"]


def one_hot(indices, n=3, p=0.8):
    probs = np.full((len(indices), n), (1 - p) / (n - 1))
    probs[np.arange(len(indices)), indices] = p
    return probs


def test_per_class_figures_match_a_hand_count():
    y_true = [0, 0, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 2, 0]
    report = classification_report(y_true, one_hot(y_pred), LABELS)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 1], [1, 0, 2]]
    covid = report["per_class"]["covid"]
    assert covid["precision"] == pytest.approx(0.5) and covid["recall"] == pytest.approx(0.5)
    assert report["per_class"]["healthy"]["recall"] == pytest.approx(2 / 3)
    assert report["per_class"]["healthy"]["support"] == 3
    f1s = [0.5, 2 * (2 / 3) * (2 / 3) / (4 / 3), 2 * (2 / 3) * (2 / 3) / (4 / 3)]
    assert report["macro_f1"] == pytest.approx(np.mean(f1s))
    assert report["accuracy"] == pytest.approx(5 / 8)


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([True, False], [0.9, 0.1]) == 1.0
    assert roc_auc([True, False], [0.1, 0.9]) == 0.0
    assert roc_auc([True, False], [0.5, 0.5]) == 0.5
    assert roc_auc([True, True], [0.5, 0.6]) is None


def test_screening_point_uses_abnormal_probability():
    # healthy is the negative label; abnormal score = 1 - p(healthy)
    probs = np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.0, 0.1, 0.9]])
    report = classification_report([1, 0, 1, 2], probs, LABELS, negative_label="healthy", threshold=0.35)
    screening = report["screening"]
    # scores: 0.2, 0.7, 0.4, 0.9 -> flagged: no, yes, yes (false positive), yes
    assert (screening["tp"], screening["fn"], screening["tn"], screening["fp"]) == (2, 0, 1, 1)
    assert screening["sensitivity"] == 1.0 and screening["specificity"] == 0.5
    assert "threshold 0.3500" in report_markdown(report)


def test_threshold_reaches_the_asked_sensitivity():
    rng = np.random.default_rng(0)
    truth = rng.random(1000) < 0.5
    scores = np.where(truth, rng.beta(5, 2, 1000), rng.beta(2, 5, 1000))
    threshold = choose_threshold(truth, scores, 0.97)
    sensitivity = (scores[truth] >= threshold).mean()
    assert sensitivity >= 0.97
    # the highest such threshold: one step higher loses the target
    above = np.sort(scores[truth])
    next_up = above[above > threshold].min()
    assert (scores[truth] >= next_up).mean() < 0.97
