"""The commands that take recordings agree on how they take them and how they end.

- every one takes several paths;
- exit 0: everything read and answered; exit 1: some input could not be read (it is named on
  stderr, the others are still answered), or nothing at all was readable; exit 2: a usage
  error (a bad option, a missing model);
- nothing readable prints a clear line, never an empty table or report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from emgdx.cli import app

runner = CliRunner()


def _run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    """A small RF model, two good records and one broken file."""
    root = tmp_path_factory.mktemp("consistency")
    sim = root / "sim"
    code, out, err = _run(
        "simulate", sim, "--subjects-per-class", 1, "--records-per-subject", 2,
        "--duration-s", 3, "--fs-hz", 8000, "--seed", 2,
    )  # fmt: skip
    assert code == 0, out + err
    model = root / "rf"
    code, out, err = _run("train", sim, "--model", "random_forest", "--out", model, "--json")
    assert code == 0, out + err
    broken = root / "broken.csv"
    broken.write_text("time,emg\n0.0,1.0\n0.001,abc\n")
    return model, sorted(sim.glob("*.hea"))[:2], broken


def _commands(model: Path, files: list[Path], out: Path) -> dict[str, list[object]]:
    """Each command on ``files`` (its own options; the paths come last)."""
    return {
        "info": ["info", *files],
        "predict": ["predict", model, *files],
        "report": ["report", model, *files, "--figures", 0, "--out", out / "r.html"],
    }


@pytest.mark.parametrize("command", ["info", "predict", "report"])
def test_several_good_paths_exit_0(
    setup: tuple[Path, list[Path], Path], command: str, tmp_path: Path
) -> None:
    model, files, _ = setup
    code, out, err = _run(*_commands(model, files, tmp_path)[command])
    assert code == 0, out + err
    assert all(f.stem in out for f in files) or command == "report"
    if command == "report":
        html = (tmp_path / "r.html").read_text()
        assert all(f.stem in html for f in files)


@pytest.mark.parametrize("command", ["info", "predict", "report"])
def test_a_bad_file_is_named_exit_1_and_the_others_still_answered(
    setup: tuple[Path, list[Path], Path], command: str, tmp_path: Path
) -> None:
    model, files, broken = setup
    code, out, err = _run(*_commands(model, [*files, broken], tmp_path)[command])
    assert code == 1, out + err
    assert "broken.csv" in err and "Traceback" not in err
    if command == "report":  # the report lists it in the document too
        html = (tmp_path / "r.html").read_text()
        assert "broken.csv" in html and files[0].stem in html
    else:
        assert files[0].stem in out


@pytest.mark.parametrize("command", ["info", "predict", "report"])
def test_nothing_readable_exits_1_with_one_clear_line_and_no_empty_table(
    setup: tuple[Path, list[Path], Path], command: str, tmp_path: Path
) -> None:
    model, _, broken = setup
    code, out, err = _run(*_commands(model, [broken], tmp_path)[command])
    assert code == 1, out + err
    assert "broken.csv" in err and "no readable record" in err
    assert "record" not in out.lower() or command == "report"  # no table header
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--fs-hz", "nan-ish"],
        ["info", "--no-such-option"],
        ["report", "--figures", "9"],
    ],
)
def test_usage_errors_exit_2(setup: tuple[Path, list[Path], Path], args: list[str]) -> None:
    _, files, _ = setup
    code, _, err = _run(*args, *files)
    assert code == 2 and "Traceback" not in err


def test_a_missing_model_folder_is_a_usage_error(
    setup: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    _, files, _ = setup
    missing = tmp_path / "no-model"
    missing.mkdir()
    code, _, err = _run("predict", missing, *files)
    assert code == 2 and "no-model" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read the --sites file"),
        ("[{", "not valid JSON"),
        ('{"name": "a"}', "non-empty JSON list"),
        ('[{"name": "a", "data_dir": "d", "colour": 1}]', "unknown key(s) ['colour']"),
        ('[{"name": "a"}]', "needs the text field(s) ['data_dir']"),
        ('[{"name": "a", "data_dir": "d", "train_subjects": "S1"}]', "must be lists"),
    ],
)
def test_federated_sites_file_problems_are_one_clear_line(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    """`--sites 2` (meant as a count) or a broken sites file: the file and the problem named,
    exit 2, no traceback."""
    sites = tmp_path / "sites.json"
    if content is not None:
        sites.write_text(content)
    arg = sites if content is not None else tmp_path / "2"
    code, out, err = _run(
        "federated", "simulate", tmp_path, "--out", tmp_path / "o", "--sites", arg
    )
    assert code == 2, out + err
    assert problem in err and str(arg) in err
    assert "Traceback" not in out + err
