"""The original DiffusionGaze code's heatmap AP (`heatmap_ap`): equal to the numbers its own evaluation code gave on
fixed inputs (tests/fixtures/original_heatmap_ap.json says how they were made), hand-checked cases, and reported
beside the protocol metrics."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.evaluate import PROTOCOLS, sample_metrics
from eval.metrics import heatmap_ap
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "original_heatmap_ap.json"


def fixed_inputs() -> list[tuple[np.ndarray, np.ndarray]]:
    """The inputs of the fixture: (heatmap [64, 64] float32, annotator points [20, 2] float32 padded with -1)."""
    rng = np.random.default_rng(20261130)
    cases = []
    for i in range(6):
        heat = rng.random((64, 64)) ** 4
        if i % 2:
            heat = np.where(heat > 0.5, heat, 0.0)
        n = 1 + i * 2
        points = rng.random((n, 2)) * 0.98 + 0.01
        if i == 5:
            points[0] = (1.0, 1.0)
        padded = np.full((20, 2), -1.0)
        padded[:n] = points
        cases.append((heat.astype(np.float32), padded.astype(np.float32)))
    for _ in range(2):
        points = rng.random((3, 2)) * 0.9 + 0.05
        ys, xs = np.mgrid[0:64, 0:64]
        heat = np.exp(-((xs - points[0, 0] * 64) ** 2 + (ys - points[0, 1] * 64) ** 2) / 18.0) + 0.1 * rng.random((64, 64))
        padded = np.full((20, 2), -1.0)
        padded[:3] = points
        cases.append((heat.astype(np.float32), padded.astype(np.float32)))
    return cases


def test_heatmap_ap_equals_the_original_code_on_fixed_inputs():
    expected = json.loads(FIXTURE.read_text())["heatmap_ap"]
    found = [heatmap_ap(heat, points) for heat, points in fixed_inputs()]
    assert found == pytest.approx(expected, abs=1e-12)


def test_heatmap_ap_by_hand():
    heat = np.zeros((64, 64))
    heat[10, 20] = 1.0  # the annotated cell of (20.5/64, 10.5/64) ranked first: AP 1
    assert heatmap_ap(heat, [(20.5 / 64, 10.5 / 64)]) == 1.0
    heat[5, 5] = 2.0  # one negative ranked above it: precision 1/2 at its recall
    assert heatmap_ap(heat, [(20.5 / 64, 10.5 / 64)]) == 0.5
    small = np.random.default_rng(0).random((32, 32))  # another size is resized (bilinear) to the 64 x 64 grid first
    resized = F.interpolate(torch.from_numpy(small)[None, None], size=(64, 64), mode="bilinear", align_corners=False)
    assert heatmap_ap(small, [(0.1, 0.1)]) == heatmap_ap(resized[0, 0].numpy(), [(0.1, 0.1)])


def test_heatmap_ap_is_reported_beside_every_protocol():
    heat = np.zeros((64, 64))
    heat[48, 16] = 1.0
    points = np.full((20, 2), -1.0)
    points[0] = (0.25, 0.75)
    for protocol in PROTOCOLS:
        assert "heatmap_ap" in PROTOCOLS[protocol]
        values = sample_metrics(protocol, heat, points, np.array([0.5, 0.5]), (640, 480), 1.0)
        assert values["heatmap_ap"] == 1.0
    assert sample_metrics("vat", heat, points, np.array([0.5, 0.5]), (640, 480), 0.0) == {}  # out of frame
