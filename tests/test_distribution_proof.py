"""The sanity proof of the distribution metrics, without a model: on ambiguous synthetic data, an ideal decoder whose
samples follow the annotators' two modes scores a better energy score, best-of-K L2 and coverage than decoders that
predict the mean, while the protocol's AUC and avg L2 prefer the mean (eval/ideal_predictors.py)."""
import json

import numpy as np
import pytest
from PIL import Image

from datasets.errors import DataError
from datasets.synthetic import AMBIGUOUS_MODES_FILE, generate_gazefollow
from eval.ideal_predictors import compare_ideal_predictors, format_table, main, read_modes

SAMPLE_K = 8


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory) -> dict:
    """{share: (root, share, compare_ideal_predictors' summary)} for shares 0.5 and 0.7 (figures drawn at 0.5)."""
    results = {}
    for share in (0.5, 0.7):
        root = tmp_path_factory.mktemp(f"ambiguous_{share}")
        generate_gazefollow(root, 1, 20, seed=0, ambiguous_split=share)
        figures = root / "figures" if share == 0.5 else None
        results[share] = root, share, compare_ideal_predictors(root, sample_k=SAMPLE_K, seed=0, figures=figures)
    return results


@pytest.fixture(params=[0.5, 0.7])
def comparison(request, comparisons):
    return comparisons[request.param]


def metric(summary: dict, predictor: str, family: str, name: str) -> float:
    return summary["predictors"][predictor][family][name]


def test_distribution_metrics_prefer_the_two_mode_decoder(comparison):
    _, _, summary = comparison
    for mean in ("mean_heatmap", "mean_point"):
        assert metric(summary, "two_mode", "distribution", "energy_score") < 0.9 * metric(
            summary, mean, "distribution", "energy_score")
        assert metric(summary, "two_mode", "distribution", "best_of_k_l2") < 0.5 * metric(
            summary, mean, "distribution", "best_of_k_l2")
        for radius in ("coverage@0.05", "coverage@0.1"):
            assert metric(summary, "two_mode", "distribution", radius) > metric(
                summary, mean, "distribution", radius) + 0.2


def test_protocol_metrics_prefer_the_mean(comparison):
    _, _, summary = comparison
    # AUC rewards the mean heatmap, which ranks both modes' pixels high; one sample covers one mode.
    assert metric(summary, "mean_heatmap", "protocol", "auc") > metric(summary, "two_mode", "protocol", "auc") + 0.1
    # avg L2 measures the distance to the annotators' mean point, where neither mode is.
    assert metric(summary, "mean_point", "protocol", "avg_l2") < 0.5 * metric(summary, "two_mode", "protocol",
                                                                              "avg_l2")


def test_scores_agree_with_the_closed_forms(comparison):
    # Per person with modes D apart and share P: the mean point scores ES = 2 P (1 - P) D; the mean heatmap, whose
    # argmax is the majority mode (either mode at P = 0.5), (1 - P) D; the two-mode decoder's V-statistic
    # P (1 - P) D (1 + 1/K) in expectation. Annotator noise and the argmax grid add about 0.01 to 0.02.
    root, share, summary = comparison
    separation = np.mean([np.linalg.norm(m["first"] - m["second"]) for m in read_modes(root).values()])
    expected = {"mean_point": 2 * share * (1 - share) * separation,
                "mean_heatmap": (1 - max(share, 1 - share)) * separation,
                "two_mode": share * (1 - share) * separation * (1 + 1 / SAMPLE_K)}
    for predictor, value in expected.items():
        assert metric(summary, predictor, "distribution", "energy_score") == pytest.approx(value, abs=0.03)
    assert summary["predictors"]["two_mode"]["distribution"]["sample_k"] == SAMPLE_K
    assert summary["predictors"]["mean_point"]["distribution"]["sample_k"] == 1
    assert summary["n_persons"] == summary["predictors"]["two_mode"]["distribution"]["n_persons"] > 20


def test_command_line_table_json_and_figure(comparisons, tmp_path, capsys):
    root, _, summary = comparisons[0.5]
    with Image.open(root / "figures" / "distribution_samples.png") as image:
        assert image.format == "PNG"
    assert len(summary["figures"]["sample_indices"]) == 4
    main(["--root", str(root), "--sample_k", str(SAMPLE_K), "--json", str(tmp_path / "ideal.json")])
    out = capsys.readouterr().out
    assert format_table(summary) in out and "ambiguous_split 0.5" in out
    assert json.loads((tmp_path / "ideal.json").read_text())["predictors"] == json.loads(
        json.dumps(summary["predictors"]))


def test_without_the_modes_file_the_error_says_how_to_make_it(tmp_path):
    generate_gazefollow(tmp_path, 1, 1, seed=0)
    with pytest.raises(DataError, match=f"{AMBIGUOUS_MODES_FILE}.*--ambiguous_split"):
        compare_ideal_predictors(tmp_path)
