"""Head tracking (IoU + Hungarian assignment), box IoU and the face-to-head expansion: pure functions, no data."""
import numpy as np
import pytest

from inference.detection import FACE_TO_HEAD, Detection, DetectionCounts, face_to_head_box, filter_detections
from inference.tracking import IoUTracker, box_iou, box_iou_matrix


def test_box_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou_matrix(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)


def test_face_to_head_expansion_by_hand():
    expansion = {"dx": 0.1, "dy": -0.2, "sw": 2.0, "sh": 1.5}
    # Face 100 x 200 centred at (150, 300): head centre (160, 260), size 200 x 300.
    np.testing.assert_allclose(face_to_head_box([100, 200, 200, 400], expansion), [60, 110, 260, 410])
    head = face_to_head_box([100, 200, 200, 400])
    assert head[2] - head[0] == pytest.approx(100 * FACE_TO_HEAD["sw"])


def test_filters_drop_and_count_in_score_order():
    counts = DetectionCounts()
    detections = [Detection(np.array([0, 0, 50, 50.0]), 0.97), Detection(np.array([0, 0, 10, 50.0]), 0.99),
                  Detection(np.array([0, 0, 50, 50.0]), 0.5), Detection(np.array([5, 5, 60, 60.0]), 0.999)]
    kept = filter_detections(detections, min_score=0.9, min_size=20, counts=counts)
    assert [d.score for d in kept] == [0.999, 0.97]
    assert counts.summary() == {"frames": 1, "kept": 2, "dropped_below_min_head_score": 1,
                                "dropped_below_min_head_size": 1}


def test_tracks_follow_people_through_missed_frames_with_the_globally_best_assignment():
    def frame(*boxes):
        return [Detection(np.array(box, dtype=float), 1.0) for box in boxes]

    tracker = IoUTracker(min_iou=0.3, max_missed=2)
    a, b = [0, 0, 10, 10], [20, 0, 30, 10]
    assert [name for name, _ in tracker.update(frame(a, b))] == ["person1", "person2"]
    assert [name for name, _ in tracker.update(frame(b, a))] == ["person2", "person1"]  # by overlap, not order
    assert [name for name, _ in tracker.update(frame(b))] == ["person2"]  # person1 missed once
    assert [name for name, _ in tracker.update(frame(b))] == ["person2"]  # twice: still alive (max_missed 2)
    assert [name for name, _ in tracker.update(frame([1, 0, 11, 10], b))] == ["person1", "person2"]
    for _ in range(3):
        tracker.update(frame(b))  # person1 missed three times: ended
    assert [name for name, _ in tracker.update(frame(a, b))] == ["person3", "person2"]
    # Greedy matching takes the best pair first: the first detection with track X (IoU 0.82), leaving the second
    # with Y at IoU 0.29 < min_iou, so Y would be lost and a new track started. The Hungarian assignment maximises
    # the total IoU (0.60 + 0.67) and keeps both tracks.
    tracker = IoUTracker(min_iou=0.3)
    tracker.update(frame([0, 0, 10, 10], [3.5, 0, 13.5, 10]))
    assert [name for name, _ in tracker.update(frame([1, 0, 11, 10], [-2, 0, 8, 10]))] == ["person2", "person1"]
