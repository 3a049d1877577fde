"""Fresh output against the golden files in tests/expected/ (regenerate: python -m tests.expected)."""

import json

from tests import expected


def test_photo_predictions_match_the_golden_file(photos_dir):
    want = json.loads(expected.PHOTOS_FILE.read_text())
    got = expected.photo_predictions()
    changed = {k: (want.get(k), v) for k, v in got.items() if want.get(k, [None])[0] != v[0]}
    assert not changed, f"predictions changed (golden, now): {changed}; if intended: python -m tests.expected"
    # Confidences may move a little with the runtime version, not more.
    assert all(abs(want[k][1] - v[1]) <= 0.02 for k, v in got.items())


def test_run_result_has_the_golden_shape():
    want = json.loads(expected.RUN_SHAPE_FILE.read_text())
    assert expected.run_result_shape() == want, "the run result's shape changed: update the schema " \
        "history in device/schema.py, then python -m tests.expected"
