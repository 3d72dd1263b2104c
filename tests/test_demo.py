"""copycat demo: the shot, the run, the outputs and the scores, at a tiny number of steps."""

import json
from pathlib import Path

import numpy as np

from copycat_nuke import demo, imageio


def test_demo_shot_has_markers_only_in_the_input(tmp_path):
    plate, clean = demo.write_shot(tmp_path)
    first = imageio.read_frame(plate.replace("####", "1001")).pixels
    truth = imageio.read_frame(clean.replace("####", "1001")).pixels
    changed = np.abs(first - truth).max(axis=2) > 0.01
    assert first.shape == (demo.HEIGHT, demo.WIDTH, 3)
    assert 0.001 < changed.mean() < 0.05  # small markers on a big plate


def test_colour_matrix_fits_an_affine_colour_change_exactly():
    rng = np.random.default_rng(0)
    source = rng.random((8, 8, 3), dtype=np.float32)
    matrix = np.array([[0.9, 0.1, 0, 0.01], [0, 1.1, 0, 0], [0.05, 0, 0.8, 0.02]], np.float32)
    fitted = demo.fit_colour_matrix([source], [demo.apply_colour_matrix(matrix, source)])
    assert np.allclose(fitted, matrix, atol=1e-4)


def test_demo_runs_end_to_end_and_reports_held_out_psnr(tmp_path):
    result = demo.run_demo(tmp_path, steps=2)
    assert set(result.psnr) == {"identity", "colour_matrix", "copycat"}
    assert result.held_out_frames == [f for f in range(1001, 1013) if f not in demo.TRAINING_FRAMES]
    assert len(result.outputs) == demo.FRAME_COUNT and all(p.exists() for p in result.outputs)
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["training_steps"] == 2
    assert summary["over_better_baseline_db"] == round(result.margin_db, 2)
    assert (tmp_path / "run" / "loss.png").exists()
    # input | network | ground truth of a held-out frame, each at twice its size
    before_after = imageio.read_frame(result.before_after).pixels
    assert Path(summary["before_after"]) == result.before_after == tmp_path / "before_after.png"
    assert before_after.shape[1] > 3 * 2 * demo.WIDTH and before_after.shape[0] > 2 * demo.HEIGHT
