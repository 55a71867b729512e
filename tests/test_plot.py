"""bin/plot_run: run records -> a PNG of their loss, HR and NDCG curves."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ncf_tf.results import plot
from ncf_tf.cli import plot as plot_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_record(path, epochs=3, hr_missing_at=None, topk=10):
    entries = [{"epoch": e, "loss": 0.5 - 0.1 * e,
                "hr": None if e == hr_missing_at else 0.3 + 0.1 * e,
                "ndcg": None if e == hr_missing_at else 0.1 + 0.05 * e,
                "sample_s": 0.1, "train_s": 1.0, "eval_s": 0.1} for e in range(epochs)]
    path.write_text(json.dumps({"config": {"topk": topk}, "epochs": entries,
                                "init": {"hr": 0.1, "ndcg": 0.05}, "best_epoch": epochs - 1}))
    return str(path)


def test_read_curves(tmp_path):
    curves = plot.read_curves(write_record(tmp_path / "run_a.json", hr_missing_at=1))
    assert curves.label == "run_a" and curves.topk == 10
    assert curves.trained.tolist() == [1, 2, 3]   # epoch e is e + 1 epochs trained
    np.testing.assert_allclose(curves.loss, [0.5, 0.4, 0.3])
    assert np.isnan(curves.hr[1]) and curves.hr[2] == pytest.approx(0.5)
    assert (curves.init_hr, curves.init_ndcg, curves.best) == (0.1, 0.05, 3)


def test_plot_run_writes_a_png(tmp_path, capsys):
    write_record(tmp_path / "run_a.json")
    write_record(tmp_path / "run_b.json", epochs=5, hr_missing_at=2)
    output = tmp_path / "curves.png"
    code = plot_cli.main(["plot_run", "--runs", str(tmp_path / "run_*.json"),
                          "--output", str(output), "--title", "toy"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"Plotted 2 runs to {output}\n"
    data = output.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1300, 425)   # one row of legend below the panels
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_dozens_of_runs_keep_the_legend_outside_the_panels(tmp_path):
    runs = [plot.read_curves(write_record(tmp_path / f"ml-1m_NeuMF_8_run_{i:02d}.json",
                                          epochs=20)) for i in range(40)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot.figure(runs)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()   # lays the figure out, as saving does
    renderer = canvas.get_renderer()
    legends = fig.legends
    assert len(legends) == 1 and len(legends[0].get_texts()) == 40
    box = legends[0].get_window_extent(renderer)
    for panel in fig.axes:
        assert not box.overlaps(panel.get_tightbbox(renderer)), panel.get_title()
    assert [panel.get_legend() for panel in fig.axes] == [None] * 3
    # Colours repeat after ten runs; the line style then tells them apart.
    styles = {(line.get_color(), line.get_linestyle()) for line in fig.axes[0].get_lines()}
    assert len(styles) == 40


def test_existing_png_refused_then_overwritten(tmp_path, capsys):
    record = write_record(tmp_path / "run.json")
    output = tmp_path / "curves.png"
    output.write_bytes(b"old")
    assert plot_cli.main(["plot_run", "--runs", record, "--output", str(output)]) == 2
    assert "exists; refusing to replace it (--overwrite)" in capsys.readouterr().err
    assert output.read_bytes() == b"old"
    assert plot_cli.main(["plot_run", "--runs", record, "--output", str(output),
                          "--overwrite", "--labels", "mine"]) == 0
    assert output.read_bytes().startswith(PNG_SIGNATURE)


def test_bad_input_one_line_error_nothing_written(tmp_path, capsys):
    record = write_record(tmp_path / "run.json")
    (tmp_path / "not_json.json").write_text("{")
    (tmp_path / "weights.json").write_text(json.dumps({"config": {}}))
    (tmp_path / "bad_epoch.json").write_text(json.dumps({"epochs": [{"epoch": 0, "loss": "x"}]}))
    (tmp_path / "empty.json").write_text(json.dumps({"epochs": []}))
    output = str(tmp_path / "curves.png")
    cases = [
        (["--runs", record], r"--output is required"),
        (["--output", output], r"--runs is required"),
        (["--runs", record, "--output", str(tmp_path / "curves.jpg")],
         r"curves\.jpg: expected a file name ending in \.png"),
        (["--runs", str(tmp_path / "nope.json"), "--output", output],
         r"nope\.json: run record not found"),
        (["--runs", str(tmp_path / "zzz*.json"), "--output", output], r"no file matches"),
        (["--runs", str(tmp_path / "not_json.json"), "--output", output],
         r"not_json\.json: not a readable JSON run record"),
        (["--runs", str(tmp_path / "weights.json"), "--output", output],
         r"weights\.json: not a run record \(expected an 'epochs' list"),
        (["--runs", str(tmp_path / "bad_epoch.json"), "--output", output],
         r"bad_epoch\.json: epochs\[0\]\.loss must be a number or null, got 'x'"),
        (["--runs", str(tmp_path / "empty.json"), "--output", output],
         r"empty\.json: nothing to plot"),
        (["--runs", f"{record},{record}", "--labels", "one", "--output", output],
         r"--labels has 1 entries but --runs names 2 records"),
    ]
    for argv, message in cases:
        assert plot_cli.main(["plot_run", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("plot_run: error: "), lines
        assert re.search(message, lines[0]), (message, lines[0])
        assert not (tmp_path / "curves.png").exists()
