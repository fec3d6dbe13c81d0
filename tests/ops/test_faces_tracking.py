"""Overlap matching (Hungarian) and stable ids for externally tracked boxes."""
import numpy as np

from mimamo_ops.faces.tracking import BoxIdTracker, box_iou_matrix, landmark_box, match_boxes


def test_box_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], dtype=float)
    iou = box_iou_matrix(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])


def test_match_boxes_maximises_total_overlap_where_greedy_would_not():
    previous = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], dtype=float)
    # Greedy would give current[0] (best for previous[0]... and previous[1]) to one and leave the other worse.
    current = np.array([[3, 0, 13, 10], [-2, 0, 8, 10]], dtype=float)
    assert match_boxes(previous, current, 0.1) == [(0, 1), (1, 0)]


def test_match_boxes_ignores_pairs_below_min_iou():
    previous = np.array([[0, 0, 10, 10]], dtype=float)
    current = np.array([[9, 9, 19, 19]], dtype=float)
    assert match_boxes(previous, current, 0.2) == []
    assert match_boxes(previous, np.zeros((0, 4)), 0.2) == []


def test_landmark_box_bounds_the_points():
    points = np.array([[3.0, 4.0], [10.0, -2.0], [5.0, 8.0]])
    np.testing.assert_allclose(landmark_box(points), [3.0, -2.0, 10.0, 8.0])


def test_box_id_tracker_keeps_ids_through_motion_and_a_short_gap_and_ends_after_grace():
    ids = BoxIdTracker(min_iou=0.2, max_missing_frames=2)
    a = np.array([0, 0, 50, 50], dtype=float)
    b = np.array([200, 0, 250, 50], dtype=float)
    assert ids.assign(np.stack([a, b])) == [0, 1]
    # Swapped order, both moved a little: ids follow the boxes.
    assert ids.assign(np.stack([b + 5, a + 5])) == [1, 0]
    assert ids.assign(np.stack([a + 10])) == [0]  # b unseen for 1 frame
    assert ids.assign(np.stack([a + 12, b + 8])) == [0, 1]  # back within the grace period
    for _ in range(3):
        ids.assign(np.stack([a + 12]))  # b unseen for 3 > 2 frames: its track ends
    assert ids.assign(np.stack([a + 12, b + 8])) == [0, 2]


def test_match_boxes_by_nearness_follows_a_face_that_moved_further_than_its_size():
    previous = np.array([[0, 0, 50, 50], [0, 200, 50, 250]], dtype=float)
    current = np.array([[40, 205, 90, 255], [45, 0, 95, 50]], dtype=float)  # both moved ~45 px: IoU < 0.1
    assert match_boxes(previous, current, 0.2) == []
    assert match_boxes(previous, current, 0.2, max_centre_distance=1.0) == [(0, 1), (1, 0)]
    far = np.array([[200, 0, 250, 50]], dtype=float)
    assert match_boxes(previous, far, 0.2, max_centre_distance=1.0) == []
