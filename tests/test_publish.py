"""imfuse.publish: versions published to a folder or S3 (a fake S3 client), and `imfuse export` onto S3."""

from pathlib import Path

import pytest

from imfuse import publish as ed
from imfuse.cli import main
from imfuse.errors import ConfigError
from fake_s3 import FakeS3


def test_split_s3():
    assert ed.split_s3("s3://models") == ("models", "")
    assert ed.split_s3("s3://models/team/a/") == ("models", "team/a/")
    with pytest.raises(ConfigError, match="names no bucket"):
        ed.split_s3("s3:///x")


def test_s3_versions_reads_integer_folders_across_pages():
    s3 = FakeS3(["imfuse/1/saved_model.pb", "imfuse/10/saved_model.pb", "imfuse/2/x", "imfuse/tmp/x",
                 "imfuse/3/variables/v", "other/7/saved_model.pb"])
    assert ed.s3_versions(s3, "models", "imfuse/") == [1, 2, 3, 10]
    assert ed.s3_versions(FakeS3(), "models", "imfuse/") == []


def test_upload_puts_saved_model_pb_last(tmp_path):
    version = tmp_path / "4"
    (version / "variables").mkdir(parents=True)
    for rel in ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
                "imfuse_model.json", "assets/readme.txt"):
        (version / rel).parent.mkdir(parents=True, exist_ok=True)
        (version / rel).write_text(rel)
    s3 = FakeS3()
    keys = ed.upload_version(s3, version, "models", "p/imfuse/4/")
    assert keys == s3.uploads and len(keys) == 5
    assert keys[-1] == "p/imfuse/4/saved_model.pb"
    assert s3.objects["p/imfuse/4/variables/variables.index"] == b"variables/variables.index"


def test_export_to_s3_publishes_the_next_version(tmp_path, monkeypatch):
    import imfuse.export

    def fake_export(model, base, name, version):
        # stands in for the TensorFlow SavedModel writer: the S3 side is what is tested here
        target = Path(base) / name / str(version)
        (target / "variables").mkdir(parents=True)
        (target / "saved_model.pb").write_bytes(b"pb")
        (target / "variables" / "variables.index").write_bytes(b"ix")
        return target

    monkeypatch.setattr(imfuse.export, "export_saved_model", fake_export)
    s3 = FakeS3(["serving/imfuse/1/saved_model.pb", "serving/imfuse/2/saved_model.pb", "serving/other/9/x"])
    version, path = ed.export_to_s3(object(), "s3://models/serving", "imfuse", client=s3)
    assert (version, path) == (3, "s3://models/serving/imfuse/3")
    assert s3.uploads == ["serving/imfuse/3/variables/variables.index", "serving/imfuse/3/saved_model.pb"]
    assert not [k for k in s3.objects if ".claim-" in k]  # the version claim is dropped once published


def test_cli_export_publishes_a_model_to_s3(monkeypatch, capsys, tmp_path):
    """The publishing path end to end with a real SavedModel: a tiny model's (the shipped
    base's own export is test_base_model's)."""
    from imfuse.networks import build_model, save_model

    model = save_model(build_model("tiny", "none"), tmp_path / "m.keras")
    s3 = FakeS3(["serving/imfuse/1/saved_model.pb"])
    monkeypatch.setattr(ed, "s3_client", lambda: s3)
    assert main(["export", "--model", str(model), "--base-path", "s3://models/serving"]) == 0
    assert capsys.readouterr().out.strip() == "s3://models/serving/imfuse/2"
    keys = [k for k in s3.uploads if k.startswith("serving/imfuse/2/")]
    assert keys[-1] == "serving/imfuse/2/saved_model.pb" and any("variables/" in k for k in keys)
    assert main(["export", "--model", str(model), "--base-path", "s3://models/serving", "--version", "7"]) == 2
    assert "not supported on s3://" in capsys.readouterr().err
    assert main(["export", "--model", str(model), "--base-path", "gs://models"]) == 2
    assert "local/mounted folder or s3://" in capsys.readouterr().err
