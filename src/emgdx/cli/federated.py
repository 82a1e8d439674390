"""``emgdx federated simulate|deploy``: one command for each way of running a federation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from emgdx.cli.console import failing, out, print_json
from emgdx.errors import ConfigError, ReadError

app = typer.Typer(
    add_completion=False,
    help="Federated training across sites (Flower): simulation or real processes on loopback.",
    no_args_is_help=True,
)

Data = Annotated[
    list[Path],
    typer.Argument(
        help="One folder per hospital (each a site), or one folder whose subjects are dealt to "
        "--n-sites virtual sites (a demonstration)."
    ),
]
Sites = Annotated[
    Path | None,
    typer.Option(
        help="JSON list of sites: {name, data_dir, train_subjects, test_subjects}; "
        "default: deal DATA's subjects to --n-sites sites."
    ),
]


def _read_sites(path: Path, spec: Any) -> list[Any]:
    """The ``--sites`` JSON file as site specs; :class:`ReadError` or :class:`ConfigError`
    naming the file and the problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadError(path, f"cannot read the --sites file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: --sites is not valid JSON ({exc})") from None
    fields = ("name", "data_dir", "train_subjects", "test_subjects")
    if not (isinstance(raw, list) and raw and all(isinstance(s, dict) for s in raw)):
        raise ConfigError(f"{path}: --sites must be a non-empty JSON list of sites {fields}")
    sites = []
    for i, s in enumerate(raw):
        unknown = sorted(set(s) - set(fields))
        missing = [k for k in ("name", "data_dir") if not isinstance(s.get(k), str)]
        lists = [k for k in fields[2:] if not isinstance(s.get(k, []), list)]
        if unknown or missing or lists:
            raise ConfigError(
                f"{path}: site {i + 1}: "
                + "; ".join(
                    part
                    for part in (
                        f"unknown key(s) {unknown}" if unknown else "",
                        f"needs the text field(s) {missing}" if missing else "",
                        f"{lists} must be lists of subject ids" if lists else "",
                    )
                    if part
                )
            )
        sites.append(
            spec(
                name=s["name"],
                data_dir=s["data_dir"],
                train_subjects=tuple(map(str, s.get("train_subjects", []))),
                test_subjects=tuple(map(str, s.get("test_subjects", []))),
            )
        )
    return sites


def _run(mode: str, **kw: Any) -> None:
    from flwr.common.logger import update_console_handler

    from emgdx.federated.core import FedSettings, SiteSpec, hospital_sites, split_sites
    from emgdx.pipeline import Pipeline, PreprocessConfig, TrainConfig

    # Flower's log lines are this command's progress; colour codes only on a terminal.
    update_console_handler(colored=sys.stderr.isatty())

    with failing(ImportError):
        if kw["sites"] is not None:
            sites = _read_sites(Path(kw["sites"]), SiteSpec)
        elif len(kw["data"]) > 1:
            sites = hospital_sites(
                [str(d) for d in kw["data"]],
                holdout_fraction=kw["holdout_fraction"],
                seed=kw["seed"],
            )
        else:
            excl: dict[str, list[str]] = {}
            for item in kw["exclude"] or []:
                site, _, label = item.partition(":")
                excl.setdefault(site, []).append(label)
            sites = split_sites(
                str(kw["data"][0]), kw["n_sites"], holdout_per_site=kw["holdout"], exclude=excl
            )
        pipe = Pipeline(
            preprocess=PreprocessConfig(target_fs_hz=kw["fs"]),
            model=kw["model"],
            train=TrainConfig(batch_size=kw["batch_size"], seed=kw["seed"]),
        )
        settings = FedSettings(
            pipeline=pipe.to_config(),
            strategy=kw["strategy"],
            rounds=kw["rounds"],
            local_epochs=kw["local_epochs"],
            proximal_mu=kw["mu"],
            out_dir=str(kw["out"]),
            threads=kw["threads"],
            seed=kw["seed"],
            sites=sites,
        )
        from emgdx.federated import run

        if mode == "simulate":
            result = run.simulate(settings)
        else:
            result = run.deploy(settings, workdir=Path(kw["out"]) / "deploy", log=out.print)
    if kw["as_json"]:
        print_json(result)
        return
    held = result.get("held_out") or {}
    rec = held.get("record", {})
    scores = (
        f"held-out records: balanced accuracy {rec.get('balanced_accuracy', float('nan')):.3f}, "
        f"macro AUC {rec.get('roc_auc', float('nan')):.3f}"
        if any(site.test_subjects for site in sites)
        else "no subject held out, so no evaluation"
    )
    out.print(
        f"{settings.strategy}: {settings.rounds} rounds x {settings.local_epochs} local epoch(s) "
        f"on {len(sites)} sites in {result['seconds']:.0f} s; {scores}; result in {kw['out']}"
    )


def _command(mode: str) -> Any:
    def command(
        data: Data,
        out: Annotated[Path, typer.Option(help="Output folder (result.json, global.npz).")],
        sites: Sites = None,
        n_sites: Annotated[int, typer.Option(min=1)] = 3,
        holdout: Annotated[
            int, typer.Option(min=0, help="Held-out subjects per virtual site (one folder).")
        ] = 1,
        holdout_fraction: Annotated[
            float,
            typer.Option(help="Held-out share of each hospital's subjects per class (folders)."),
        ] = 1 / 3,
        exclude: Annotated[
            list[str] | None,
            typer.Option(help="SITE:LABEL a site must not hold (non-IID), e.g. C:myopathy."),
        ] = None,
        strategy: Annotated[str, typer.Option(help="fedavg, fedprox or fedbn.")] = "fedavg",
        rounds: Annotated[int, typer.Option(min=1)] = 5,
        local_epochs: Annotated[int, typer.Option(min=1)] = 1,
        mu: Annotated[float, typer.Option(help="FedProx proximal weight.")] = 0.01,
        model: str = "cnn1d",
        fs: Annotated[float, typer.Option(help="Common sampling rate of all sites (Hz).")] = 6000.0,
        batch_size: int = 64,
        threads: Annotated[int, typer.Option(min=1)] = 1,
        seed: int = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        args = dict(locals())
        args.pop("mode", None)
        _run(mode, **args)

    command.__doc__ = (
        "Federated training in Flower's simulation engine (one virtual SuperNode per site)."
        if mode == "simulate"
        else "Federated training as real Flower processes on loopback: a SuperLink, one "
        "SuperNode per site and `flwr run` (insecure; see docs/federated.md for TLS)."
    )
    return command


app.command(name="simulate")(_command("simulate"))
app.command(name="deploy")(_command("deploy"))
