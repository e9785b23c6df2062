"""Tests for imfuse.beam_jobs: output names, outcome records, quarantine and summary files."""

from __future__ import annotations

import json

from imfuse.beam_jobs import colliding_stems, finish, last_line, output_stem, pipeline_failed, write_record


def test_output_names_stay_unique():
    paths = ["/a/x.jpg", "/b/x.png", "/a/y.jpg"]
    colliding = colliding_stems(paths)
    assert colliding == {"x"}
    names = [output_stem(p, colliding) for p in paths]
    assert len(set(names)) == 3 and names[2] == "y" and names[0].startswith("x-")


def test_records_become_quarantine_and_summary(tmp_path):
    out = str(tmp_path)
    write_record(("written", "/in/b.mp4", 12, "audio: opus"), out, ("frames", "audio"))
    write_record(("bad", "/in/z.mp4", "truncated"), out)
    write_record(("bad", "/in/a.mp4", "not a video"), out)
    write_record(("written", "/in/c.mp4", 3, None), out, ("frames", "audio"))
    summary = finish(out, {"input": "/in/*"}, matched=5, totals=lambda w: {"frames": sum(r["frames"] for r in w)})
    assert summary == {"input": "/in/*", "matched": 5, "written": 2, "quarantined": 2, "frames": 15}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    lines = [json.loads(ln) for ln in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert lines == [{"source": "/in/a.mp4", "reason": "not a video"}, {"source": "/in/z.mp4", "reason": "truncated"}]
    assert not (tmp_path / ".records").exists()


def test_no_records_still_writes_both_files(tmp_path):
    assert finish(str(tmp_path), {}, matched=0) == {"matched": 0, "written": 0, "quarantined": 0}
    assert (tmp_path / "quarantine.jsonl").read_text() == ""


def test_runner_failures_become_one_line():
    message = "Traceback ...\n  File x\n[[node foo]]\nValueError: the real reason\n\n[[{{node bar}}]]"
    assert last_line(message) == "ValueError: the real reason"
    err = pipeline_failed("batch", RuntimeError(message))
    assert str(err) == "batch pipeline failed: RuntimeError: ValueError: the real reason"


def test_open_job_refuses_bad_inputs_before_any_work(tmp_path, shared_data):
    import pytest

    from imfuse.beam_jobs import open_job
    from imfuse.errors import DataError, ImageError

    style = str(shared_data / "styles" / "pink_zigzag.jpg")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"x")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError):
        open_job(str(tmp_path / "bad.jpg"), str(tmp_path / "in" / "*"), str(tmp_path / "out"))
    with pytest.raises(DataError, match="no files match"):
        open_job(style, str(tmp_path / "in" / "*.png"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    style_bytes, name, paths, colliding = open_job(style, str(tmp_path / "in" / "*"), str(tmp_path / "out" / "x"))
    assert len(style_bytes) > 1000 and name.endswith("pink_zigzag.jpg") and colliding == frozenset()
    assert paths == [str(tmp_path / "in" / "a.jpg")] and (tmp_path / "out" / "x").is_dir()
    write_record(("bad", "/in/old.jpg", "from a killed run"), str(tmp_path / "out" / "x"))
    open_job(style, str(tmp_path / "in" / "*"), str(tmp_path / "out" / "x"))  # a rerun starts clean
    assert finish(str(tmp_path / "out" / "x"), {}, matched=1)["quarantined"] == 0


def test_progress_copies_in_one_process_share_one_bar(capsys):
    """Beam gives each worker thread a copy (pickled) of the Map's function: one bar still
    counts every input, and closing it from the driver's object ends it."""
    import pickle

    from imfuse.beam_jobs import _BARS, Progress

    progress = Progress(3, True, desc="test-job", unit="img")
    copies = [pickle.loads(pickle.dumps(progress)) for _ in range(2)]
    for fn, record in zip((copies[0], copies[1], progress), "abc"):
        assert fn(record) == record
    assert _BARS[progress.key].n == 3
    progress.close()
    assert progress.key not in _BARS and "test-job: 100%" in capsys.readouterr().err
