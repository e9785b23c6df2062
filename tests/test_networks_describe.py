"""`imfuse models describe`: parameter and FLOP tables."""

from __future__ import annotations

import re

from imfuse.cli import main
from imfuse.networks import build_model
from imfuse.networks.describe import summarize


def test_summary_counts_match_the_model():
    model = build_model("reduced")
    s = summarize(model, [64, 128])
    assert s.total_params == model.count_params()
    assert s.style_params == model.variant.style_param_count
    # Convolutions dominate: 4x the pixels is close to 4x the FLOPs.
    assert 3.8 < s.transformer_gflops[128] / s.transformer_gflops[64] < 4.2
    assert s.predictor_gflops > 0


def test_cli_describe_prints_table_with_full_style_params(capsys):
    assert main(["models", "describe", "--variant", "all", "--sizes", "64"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if re.match(r"^(full|reduced)(\s+[\d,]+){5}$", line)  # the parameter table's rows
    }
    assert rows["full"][-1] == "2,758"
    full_transformer = int(rows["full"][3].replace(",", ""))
    reduced_transformer = int(rows["reduced"][3].replace(",", ""))
    assert full_transformer > 10 * reduced_transformer
    assert "tf.profiler" in out
    assert re.search(r"^full\s+64\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M)


def test_cli_describe_bad_sizes(capsys):
    assert main(["models", "describe", "--sizes", "big"]) == 2
    assert "--sizes" in capsys.readouterr().err
