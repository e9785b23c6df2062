from imfuse.versions import is_saved_model, saved_model_versions, version_dirs, version_number


def test_version_number_takes_ascii_integers_only():
    assert version_number("12") == 12
    assert version_number("007") == 7
    for name in ("", "1a", ".tmp-3", "-1", "\u0663", "1.0"):
        assert version_number(name) is None


def test_version_dirs_lists_integer_subfolders_only(tmp_path):
    for name in ("1", "3", "10", ".tmp-4", ".claim-5", "latest"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert sorted(version_dirs(tmp_path)) == [1, 3, 10]
    assert version_dirs(tmp_path)[10] == tmp_path / "10"
    assert version_dirs(tmp_path / "missing") == {}


def test_is_saved_model_accepts_binary_or_text_protos(tmp_path):
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        (tmp_path / name).mkdir()
        (tmp_path / name / name).write_bytes(b"")
        assert is_saved_model(tmp_path / name)
    assert not is_saved_model(tmp_path) and not is_saved_model(tmp_path / "missing")


def test_saved_model_versions_are_the_complete_ones(tmp_path):
    for name in ("1", "2", "3"):
        (tmp_path / name).mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "3" / "saved_model.pbtxt").write_text("")
    assert saved_model_versions(tmp_path) == {1: tmp_path / "1", 3: tmp_path / "3"}  # 2: an export in progress
