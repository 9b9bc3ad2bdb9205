"""The command line turns user errors into one-paragraph messages and exit code 2."""

from nnsearch.cli import main


def test_missing_space_file_exits_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["search", "--space", str(missing), "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "Traceback" not in err


def test_missing_data_path_exits_2_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "no-data"
    code = main(["search", "--space", "tiny", "--data", str(missing), "--trials", "1",
                 "--db", str(tmp_path / "s.db")])
    assert code == 2
    assert str(missing) in capsys.readouterr().err


def test_bad_resolution_exits_2(tmp_path, capsys):
    assert main(["search", "--resolution", "big", "--db", str(tmp_path / "s.db")]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
