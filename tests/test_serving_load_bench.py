"""bench/serving_load.py's verdict: its four checks are printed and any failing one fails the run."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path


BENCH = Path(__file__).resolve().parents[1] / "bench" / "serving_load.py"


def _bench():
    spec = importlib.util.spec_from_file_location("serving_load_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_malformed_kind_has_expected_statuses():
    bench = _bench()
    planned = {(kind, api) for good, kind, api in bench.plan(280, 0.5, seed=0) if not good}
    assert planned == set(bench.EXPECTED)  # no bad request goes unchecked
    assert all(bench.EXPECTED[key] for key in planned)


def test_toy_run_passes_the_request_checks_and_fails_on_memory_when_told_to(shared_data, capsys):
    bench = _bench()
    # a tolerance no run can meet: RSS may also end a few MB below its baseline (seen on a Zen 5)
    serving_log = logging.getLogger("imfuse.serving")
    level = serving_log.level
    try:
        code = bench.main(["--model", "toy", "--requests", "32", "--clients", "4", "--rss-tolerance-mb", "-100000"])
    finally:
        serving_log.setLevel(level)  # main() silences it for the expected failures
    out = capsys.readouterr().out
    checks = out.split("checks:\n", 1)[1].splitlines()[:4]
    assert [line.split()[0] for line in checks] == ["PASS", "PASS", "PASS", "FAIL"], out
    assert "memory back near baseline" in checks[3] and "tolerance -100000 MB" in checks[3]
    assert code == 1  # one failing check is enough
