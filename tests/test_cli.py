"""The command line turns user errors into one-paragraph messages and exit code 2."""

from nnsearch.cli import main


def test_missing_space_file_exits_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["search", "--space", str(missing), "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "Traceback" not in err


def test_missing_data_path_exits_2_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "no-data"
    code = main(["search", "--space", "tiny", "--data", str(missing), "--trials", "1", "--db", str(tmp_path / "s.db")])
    assert code == 2
    assert str(missing) in capsys.readouterr().err


def test_bad_resolution_exits_2(tmp_path, capsys):
    assert main(["search", "--resolution", "big", "--db", str(tmp_path / "s.db")]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_unreachable_database_is_a_one_line_error(tmp_path, capsys):
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    assert main(["search", "--space", "tiny", "--trials", "1", "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnsearch: error: opening the store at") and "127.0.0.1:1" in err
    assert "\n" not in err


def test_bad_search_options_name_the_option(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["search", "--space", "tiny", "--trials", "0", "--db", db]) == 2
    assert "--trials must be >= 1" in capsys.readouterr().err
    assert main(["search", "--space", "tiny", "--crops", "64,big", "--db", db]) == 2
    assert "--crops must be comma-separated integers" in capsys.readouterr().err
    assert main(["search", "--space", "tiny", "--heartbeat-interval", "5", "--grace-period", "5", "--db", db]) == 2
    assert "grace period > interval" in capsys.readouterr().err


def test_space_file_errors_name_the_file_key_and_allowed_values(tmp_path, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text("levels: [2]\nwidths: [[8], [16]]\nskip: [concat, attention]\n")
    assert main(["search", "--space", str(space), "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert str(space) in err and "'skip' choice 'attention'" in err and "['concat', 'add', 'none']" in err
    space.write_text("levels: [2]\nwidths: [[8], []]\n")
    assert main(["search", "--space", str(space), "--db", str(tmp_path / "s.db")]) == 2
    assert "'widths[1]' must list at least one choice" in capsys.readouterr().err


def test_bad_data_path_leaves_no_study_behind(tmp_path, capsys):

    from nnsearch.search.study import optuna_storage
    from nnsearch.store.engine import Store

    db = str(tmp_path / "s.db")
    assert main(["search", "--space", "tiny", "--data", str(tmp_path / "none"), "--study", "x", "--db", db]) == 2
    assert optuna_storage(Store(db)).get_all_studies() == []
    assert main(["search", "--space", "tiny", "--data", str(tmp_path / "none"), "--workers", "2", "--db", db]) == 2
    assert optuna_storage(Store(db)).get_all_studies() == []


def test_search_defaults_are_the_library_defaults_and_options_override_them():
    from nnsearch.cli import build_parser
    from nnsearch.commands.study import search_config
    from nnsearch.search.config import HeartbeatConfig, LatencyConfig
    from nnsearch.search.early_stopping import EarlyStopRule
    from nnsearch.train.distill import DistillConfig

    config, heartbeat = search_config(build_parser().parse_args(["search", "--space", "tiny"]))
    assert config.distill == DistillConfig() and config.latency == LatencyConfig()
    assert heartbeat == HeartbeatConfig() and config.budget.early_stop == EarlyStopRule()
    assert (config.teacher.source, config.seed, config.sampler.name) == ("cpu", 0, "guided")
    args = build_parser().parse_args(
        [
            "search",
            "--space",
            "tiny",
            "--steps",
            "7",
            "--epochs",
            "1",
            "--crops",
            "32",
            "--seed",
            "3",
            "--resolution",
            "64x96",
            "--no-early-stop",
            "--heartbeat-interval",
            "5",
            "--grace-period",
            "9",
            "--no-measure",
        ]
    )
    config, heartbeat = search_config(args)
    assert (config.distill.steps, config.distill.epochs, config.distill.crops) == (7, 1, (32,))
    assert config.distill.seed == config.seed == 3 and config.budget.early_stop is None
    assert (config.latency.height, config.latency.width, config.latency.measure) == (64, 96, False)
    assert (heartbeat.interval_s, heartbeat.grace_s) == (5, 9)


def test_demo_and_search_trials_both_mean_finished_trials_in_all():
    from nnsearch.cli import build_parser

    for command in ("demo", "search"):
        action = next(
            a for a in build_parser()._subparsers._group_actions[0].choices[command]._actions if a.dest == "trials"
        )
        assert "finished trials the study should have" in action.help


def test_building_the_parser_loads_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, time; t = time.perf_counter(); from nnsearch.cli import build_parser; "
        "build_parser().format_help(); "
        "[p.format_help() for p in build_parser()._subparsers._group_actions[0].choices.values()]; "
        "print(sorted(m for m in ('torch', 'optuna', 'pandas', 'sqlalchemy', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_shared_options_have_one_spelling_and_old_spellings_still_work():
    from nnsearch.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    helps = {
        name: {a.option_strings[0]: a.help for a in command._actions if a.option_strings}
        for name, command in commands.items()
    }
    max_side = {name: h["--max-side"] for name, h in helps.items() if "--max-side" in h}
    assert set(max_side) >= {"search", "export", "evaluate", "train"}
    assert all(text.startswith("centre-crop every image to at most PX per side") for text in max_side.values())
    assert (
        parser.parse_args(["export", "NN", "--to", "d"]).out
        == "d"
        == parser.parse_args(["export", "NN", "--out", "d"]).out
    )
    assert parser.parse_args(["report", "--study", "s", "--results", "r"]).out == "r"
    assert parser.parse_args(["replay", "--study", "s", "--results", "r"]).out == "r"
    assert parser.parse_args(["replay", "--study", "s", "--sampler", "tpe", "--sampler", "random"]).sampler == [
        "tpe",
        "random",
    ]
    assert "--to" not in commands["export"].format_help() and "--results" not in commands["report"].format_help()
