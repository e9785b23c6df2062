"""The terminal view of `imfuse pipeline run --local`: stage lines from kfp task outputs,
failure tails, and the capture of everything else into the run's log file."""

import io
import json
import logging
import os
import subprocess
import sys

from pipelines.progress import (
    PipelineProgress,
    _Terminal,
    capture,
    format_duration,
    key_metric,
    new_log_path,
    read_cache_entry,
    read_executor_output,
    stage_label,
    stage_line,
)

RUN = "imfuse-training-2026-12-02-03-58-14-887675"

# Shapes as kfp 2.17 writes them (trimmed from a real run).
EXECUTOR_OUTPUTS = {
    "prepare-data": {"artifacts": {"dataset": {"artifacts": [{"name": "dataset", "uri": "/x/dataset", "metadata": {
        "dataset_hash": "sha256:4c7b", "demo_data": True, "accepted": 24, "quarantined": 2, "duplicates": 1}}]}}},
    "train-model-2": {"artifacts": {
        "metrics": {"artifacts": [{"name": "metrics", "uri": "/x/metrics", "metadata": {
            "train/loss": 13985.116, "train/images_per_second": 3.6152, "train/grad_norm": 69862.5}}]},
        "model": {"artifacts": [{"name": "model", "uri": "/x/model", "metadata": {
            "mlflow_run_id": "4ce3", "variant": "reduced", "steps": 20, "file": "model.keras"}}]}}},
    "evaluate-model-3": {"parameterValues": {"Output": False}, "artifacts": {
        "report": {"artifacts": [{"name": "report", "uri": "/x/report", "metadata": {
            "blessed": False, "gate_metric": "eval/style_ratio_unseen",
            "reason": "candidate eval/style_ratio_unseen 0.4321 > init model reduced.keras 0.3894 x (1 + 0) = 0.3894"}}]},
        "metrics": {"artifacts": [{"name": "metrics", "uri": "/x/metrics", "metadata": {
            "eval/style_loss_unseen": 976218.25, "eval/baseline_style_loss_unseen": 832397.8125,
            "eval/style_ratio_unseen": 0.43213, "eval/baseline_style_ratio_unseen": 0.38942}}]}}},
    "register-model-3": {"parameterValues": {"registered_model": "imfuse-reduced", "version": 3,
                                             "aliases": "challenger,champion"}},
    "export-deploy-model-3": {"parameterValues": {"serving_version": 2, "path": "/w/serving/imfuse/2"}},
}


def _write_outputs(root):
    for task, data in EXECUTOR_OUTPUTS.items():
        path = root / RUN / task / "executor_output.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(data))


def test_durations_labels_and_line_layout():
    assert [format_duration(s) for s in (0.2, 8.4, 72, 3599, 3725)] == ["0s", "8s", "1m12s", "59m59s", "1h02m"]
    assert stage_label("train-model-2") == "train" and stage_label("export-deploy-model-3") == "export + deploy"
    assert stage_label("prepare-data") == "prepare data" and stage_label("something-else-4") == "something-else"
    assert stage_line("train", "SUCCESS", 72, "loss 13985, 3.6 img/s") == \
        "  train            SUCCESS   1m12s  loss 13985, 3.6 img/s"
    assert stage_line("register", "SKIPPED", None, "not blessed") == "  register         SKIPPED          not blessed"


def test_key_metric_of_each_stage_from_its_executor_output(tmp_path):
    _write_outputs(tmp_path)
    metric = {task: key_metric(task, read_executor_output(tmp_path / RUN / task / "executor_output.json"))
              for task in EXECUTOR_OUTPUTS}
    assert metric == {
        "prepare-data": "24 images accepted, 2 quarantined, 1 duplicates (demo data)",
        "train-model-2": "20 steps, loss 13985, 3.6 img/s",
        "evaluate-model-3": "NOT blessed: candidate eval/style_ratio_unseen 0.4321 > init model reduced.keras "
                            "0.3894 x (1 + 0) = 0.3894",
        "register-model-3": "imfuse-reduced version 3 (challenger, champion)",
        "export-deploy-model-3": "serving version 2 at /w/serving/imfuse/2",
    }
    # No gate reason recorded: the verdict with the gate metric against the baseline's.
    data = json.loads(json.dumps(EXECUTOR_OUTPUTS["evaluate-model-3"]))
    data["artifacts"]["report"]["artifacts"][0]["metadata"] = {}
    data["parameterValues"]["Output"] = True
    (tmp_path / "e.json").write_text(json.dumps(data))
    assert key_metric("evaluate-model", read_executor_output(tmp_path / "e.json")) == \
        "blessed: eval/style_ratio_unseen 0.432 vs baseline 0.389"
    # Outputs without the expected fields give no metric rather than an error.
    (tmp_path / "empty.json").write_text("{}")
    assert key_metric("train-model", read_executor_output(tmp_path / "empty.json")) == ""
    assert key_metric("register-model", read_executor_output(tmp_path / "empty.json")) == ""


def test_cache_entry_outputs(tmp_path):
    entry = tmp_path / "0f5f5a611750abc.json"
    entry.write_text(json.dumps({"dataset": {"__kfp_artifact__": True, "schema_title": "system.Dataset",
                                             "name": "dataset", "uri": "/x", "metadata": {
                                                 "accepted": 24.0, "quarantined": 0.0, "duplicates": 0.0}}}))
    assert key_metric("prepare-data", read_cache_entry(entry)) == "24 images accepted, 0 quarantined, 0 duplicates"


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_stage_lines_from_kfp_records_and_a_failure_tail(tmp_path):
    root = tmp_path / "pipeline-root"
    _write_outputs(root)
    (root / ".kfp_cache").mkdir()
    (root / ".kfp_cache" / "0f5f5a611750ffff.json").write_text(json.dumps(
        {"dataset": {"__kfp_artifact__": True, "metadata": {"accepted": 24, "quarantined": 0, "duplicates": 0}}}))
    term, clock = io.StringIO(), _Clock()
    progress = PipelineProgress(_Terminal(term, tty=False), root, tmp_path / "run.log", clock=clock)
    # kfp.local's own messages (logging.info on the root logger), colours and all.
    progress.event("Task prepare-data cache hit (key=0f5f5a611750); skipping execution.")
    progress.event("Executing task \x1b[96m'train-model-2'\x1b[0m")
    progress.output('    [KFP Executor 2026-12-02 INFO]: Got executor_input:\n    {\n        "inputs": {}\n    }\n')
    for i in range(1, 21):
        progress.output(f"    train: {i * 5}%|█| {i}/20 [00:0{i % 10}<00:00, 1.5step/s]\r")
    progress.output("\n")
    clock.now += 72
    progress.event("Task \x1b[96m'train-model-2'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m")
    assert progress.bar.startswith("train: 100%|")
    progress.event("Executing task 'evaluate-model-3'")
    progress.output("    Traceback (most recent call last):\n      File \"x.py\", line 1\n"
                    "    RuntimeError: the dataset is empty\n    \n\n")
    clock.now += 5
    progress.event("Task 'evaluate-model-3' finished with status FAILURE")
    progress.event("Task evaluate-model-3 failed (attempt 1/2). Retrying in 30.0s...")
    progress.event("Skipping task condition-5: upstream task(s) ['evaluate-model-3'] failed.")  # not a stage
    progress.report_failure()
    lines = term.getvalue().splitlines()
    assert lines[:4] == [
        "  prepare data     CACHED       0s  24 images accepted, 0 quarantined, 0 duplicates",
        "  train            running ...",
        "  train            SUCCESS   1m12s  20 steps, loss 13985, 3.6 img/s",
        "  evaluate         running ...",
    ]
    assert lines[4] == "  evaluate         FAILED       5s  RuntimeError: the dataset is empty"
    assert lines[5].strip() == "retrying evaluate in 30s (attempt 2/2)"
    assert lines[6] == "Last 3 lines of the evaluate stage:"
    assert lines[7:10] == ["  | Traceback (most recent call last):", '  |   File "x.py", line 1',
                           "  | RuntimeError: the dataset is empty"]
    assert lines[10] == f"Full log: {tmp_path / 'run.log'}"
    assert len(lines) == 11
    # The bar's 20 updates are one line of the tail, not twenty.
    assert sum("train:" in line for line in progress.log_tail) == 1


def test_unblessed_run_reports_register_and_export_skipped(tmp_path):
    _write_outputs(tmp_path)
    term = io.StringIO()
    progress = PipelineProgress(_Terminal(term, tty=False), tmp_path)
    progress.event("Executing task 'evaluate-model-3'")
    progress.event("Task 'evaluate-model-3' finished with status SUCCESS")
    progress.report_unblessed()
    assert term.getvalue().splitlines()[-2:] == [
        "  register         SKIPPED          not blessed", "  export + deploy  SKIPPED          not blessed"]


def test_tty_shows_a_live_line_with_the_bar_then_the_stage_line(tmp_path):
    _write_outputs(tmp_path)
    term = io.StringIO()
    progress = PipelineProgress(_Terminal(term, tty=True), tmp_path)
    try:
        progress.event("Executing task 'train-model-2'")
        progress.output("    train:  45%|████▌     | 9/20 [00:12<00:07,  1.35step/s]\r")
        progress._tick()
        progress.event("Task 'train-model-2' finished with status SUCCESS")
    finally:
        progress.close()
    text = term.getvalue()
    assert "\r\x1b[K  train            running" in text and "train: 45%|████▌ | 9/20" in text
    assert text.endswith("\r\x1b[K  train            SUCCESS      0s  20 steps, loss 13985, 3.6 img/s\n")
    assert "running ...\n" not in text


def test_capture_sends_everything_but_the_stage_lines_to_the_log(tmp_path, capfd):
    """Python streams, raw fds 1 and 2, child processes and kfp-style logging all land in the
    log file; our lines go to the stream that was sys.stdout; all of it is restored after."""
    log_path = new_log_path(tmp_path)
    assert log_path.parent == tmp_path / "logs" and log_path.name.startswith("pipeline-")
    term = io.StringIO()
    root_level = logging.getLogger().level
    with capture(log_path, tmp_path / "pipeline-root", term=term) as progress:
        progress.say("first line")
        print("printed by kfp")
        print("a warning", file=sys.stderr)
        os.write(1, b"raw fd 1\n")
        os.write(2, b"raw fd 2\n")
        subprocess.run([sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"],
                       check=True)
        logging.info("Task train-model cache hit (key=abc); skipping execution.")  # outside a kfp task
        logging.getLogger("somelib").info("library info")
    assert logging.getLogger().level == root_level
    print("after the capture")
    os.write(1, b"fd 1 after\n")
    out, err = capfd.readouterr()
    assert term.getvalue().splitlines() == ["first line", "  train            CACHED       0s"]
    log = log_path.read_text()
    for text in ("printed by kfp", "a warning", "raw fd 1", "raw fd 2", "child out", "child err",
                 "INFO - Task train-model cache hit", "library info"):
        assert text in log, text
    assert "first line" not in log and "after the capture" not in log
    assert "after the capture" in out and "fd 1 after" in out
    assert "printed by kfp" not in out + err and "raw fd" not in out + err and "child" not in out + err


def test_capture_verbose_tees_the_stream_and_restores_on_error(tmp_path):
    term = io.StringIO()
    root_level = logging.getLogger().level
    stdout = sys.stdout
    try:
        with capture(tmp_path / "v.log", tmp_path, verbose=True, term=term):
            print("streamed")
            raise ValueError("boom")
    except ValueError:
        pass
    assert sys.stdout is stdout and logging.getLogger().level == root_level
    assert "streamed" in term.getvalue() and "streamed" in (tmp_path / "v.log").read_text()
