"""Flower ``ClientApp`` (one per site) and ``ServerApp`` (the aggregator), Message API.

The same apps run in Flower's simulation engine (:func:`emgdx.federated.run.simulate`) and in
its deployment engine (:func:`emgdx.federated.run.deploy`, ``flwr run`` against a SuperLink),
where ``client_app`` and ``server_app`` below are the components named in the app's
``pyproject.toml``. In deployment a site finds its data through its SuperNode's
``--node-config`` and the server its settings through the run config key ``settings-file``.
"""

from __future__ import annotations

import json
import time
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from emgdx.errors import ConfigError
from emgdx.federated.core import (
    FedSettings,
    SiteSpec,
    evaluate_local,
    fit_local,
    initial_state,
    local_pipeline,
    prepare_for_predict,
    site_windows,
    write_predictions,
)

_LOCAL_BN = "emgdx-local-bn"  # context.state key of a FedBN site's own batch-norm state


def _site(context: Context, sites: list[SiteSpec] | None) -> SiteSpec:
    """The site this node serves: from the simulation's partition id, else the node config."""
    if sites and "partition-id" in context.node_config:
        return sites[int(context.node_config["partition-id"])]
    return SiteSpec.from_node_config(context.node_config)


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def _incoming(msg: Message, context: Context, fedbn: bool) -> dict[str, np.ndarray]:
    """Global weights, with a FedBN site's own batch-norm entries put back."""
    state = _numpy(msg.content.array_records["arrays"])
    if fedbn and _LOCAL_BN in context.state:
        local = context.state[_LOCAL_BN]
        assert isinstance(local, ArrayRecord)
        state.update(_numpy(local))
    return state


def _cfg(cfg: Any, key: str, default: Any = None) -> Any:
    """A config value (``Any``: Flower's union of record value types)."""
    value: Any = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"the server's message has no {key!r}")
    return value


def _arrays(state: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()})


def train_round(
    site: SiteSpec,
    cfg: dict[str, Any],
    state: dict[str, np.ndarray],
    local_bn: dict[str, np.ndarray] | None,
    partition: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, dict[str, Any]]:
    """One site's local training from the global ``state`` (Flower-free, for tests).

    Under FedBN the site's own batch-norm entries (``local_bn``, from its previous round)
    replace the global ones before training, and the new ones are returned to be kept.

    Returns
    -------
    state, local_bn, metrics
        Trained weights (all entries, sent to the server), the batch-norm entries to keep
        (FedBN, else ``None``) and ``num-examples`` / ``train-loss`` / ``seconds``.
    """
    import torch

    torch.set_num_threads(int(_cfg(cfg, "threads", 1)))
    rnd = int(_cfg(cfg, "server-round"))
    fedbn = str(_cfg(cfg, "strategy")) == "fedbn"
    pipe = local_pipeline(
        json.loads(str(_cfg(cfg, "pipeline"))),
        int(_cfg(cfg, "local-epochs")),
        int(_cfg(cfg, "seed", 0)) + 1000 * rnd + partition,
    )
    train_w, _ = site_windows(pipe, site)
    t0 = time.perf_counter()
    start = dict(state)
    if fedbn and local_bn:
        start.update(local_bn)
    new, n = fit_local(pipe, train_w, start, proximal_mu=float(_cfg(cfg, "proximal-mu", 0.0)))
    hist = pipe.train_result_.history
    metrics = {
        "num-examples": n,
        "train-loss": float(hist[-1]["train_loss"]) if hist else float("nan"),
        "seconds": time.perf_counter() - t0,
    }
    local = {k: new[k] for k in pipe.model_.local_state_keys()} if fedbn else None
    return new, local, metrics


def make_client_app(sites: list[SiteSpec] | None = None) -> ClientApp:
    """A ClientApp; ``sites`` maps simulation partition ids to sites (else node config)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        cfg = dict(msg.content.config_records["config"])
        local = context.state.array_records.get(_LOCAL_BN)
        state, local_bn, metrics = train_round(
            _site(context, sites),
            cfg,
            _numpy(msg.content.array_records["arrays"]),
            None if local is None else _numpy(local),
            int(_cfg(context.node_config, "partition-id", 0)),
        )
        if local_bn is not None:
            context.state[_LOCAL_BN] = _arrays(local_bn)
        content = RecordDict({"arrays": _arrays(state), "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        import torch

        cfg = msg.content.config_records["config"]
        torch.set_num_threads(int(_cfg(cfg, "threads", 1)))
        site = _site(context, sites)
        pipe = local_pipeline(json.loads(str(cfg["pipeline"])), 1, 0)
        train_w, test_w = site_windows(pipe, site)
        if test_w is None or len(test_w) == 0:
            metrics = MetricRecord({"num-examples": 0, "balanced-accuracy": 0.0, "roc-auc": 0.0})
            return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
        prepare_for_predict(pipe, train_w, _incoming(msg, context, cfg["strategy"] == "fedbn"))
        scores, probs, index = evaluate_local(pipe, test_w)
        out_dir = str(cfg.get("out-dir", ""))
        if out_dir:  # a site keeps its own predictions (they never go to the server)
            write_predictions(out_dir, site.name, probs, index)
        # NaN is not a valid metric value for aggregation: report 0 with a flag instead.
        scores["roc-auc-defined"] = int(np.isfinite(scores["roc-auc"]))
        if not scores["roc-auc-defined"]:
            scores["roc-auc"] = 0.0
        return Message(content=RecordDict({"metrics": MetricRecord({**scores})}), reply_to=msg)

    return app


def _strategy(s: FedSettings) -> FedAvg:
    n = s.n_sites
    common: dict[str, Any] = {
        "min_train_nodes": n,
        "min_evaluate_nodes": n,
        "min_available_nodes": n,
    }
    if s.sites and not any(site.test_subjects for site in s.sites):
        # No site holds subjects out: there is nothing to evaluate (and Flower would divide
        # by zero examples).
        common["fraction_evaluate"] = 0.0
    if s.strategy == "fedprox":
        return FedProx(proximal_mu=s.proximal_mu, **common)
    return FedAvg(**common)  # FedBN: FedAvg on the server, batch norm kept local by the sites


def run_server(grid: Grid, settings: FedSettings) -> dict[str, Any]:
    """Run the federated rounds; write ``result.json`` + ``global.npz`` to ``out_dir``."""
    pipe = local_pipeline(settings.pipeline, settings.local_epochs, settings.seed)
    initial = _arrays(initial_state(pipe))
    config = ConfigRecord(
        {
            "pipeline": json.dumps(settings.pipeline),
            "local-epochs": settings.local_epochs,
            "strategy": settings.strategy,
            "threads": settings.threads,
            "seed": settings.seed,
            "out-dir": settings.out_dir,
        }
    )
    t0 = time.perf_counter()

    def progress(server_round: int, arrays: ArrayRecord) -> None:
        """A plain progress line after every round (also in a log): done, elapsed, left."""
        if server_round > 0:
            elapsed = time.perf_counter() - t0
            left = elapsed / server_round * (settings.rounds - server_round)
            log(
                INFO,
                "emgdx federated: round %d/%d done (%d%%), %.0f s elapsed, about %.0f s left",
                server_round,
                settings.rounds,
                round(100 * server_round / settings.rounds),
                elapsed,
                left,
            )

    result = _strategy(settings).start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=settings.rounds,
        train_config=config,
        evaluate_config=config,
        evaluate_fn=progress,
    )
    summary: dict[str, Any] = {
        "strategy": settings.strategy,
        "rounds": settings.rounds,
        "local_epochs": settings.local_epochs,
        "proximal_mu": settings.proximal_mu if settings.strategy == "fedprox" else 0.0,
        "n_sites": settings.n_sites,
        "seconds": time.perf_counter() - t0,
        "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
        "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
    }
    if settings.out_dir:
        out = Path(settings.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = _numpy(result.arrays)
        np.savez(out / "global.npz", **arrays)
        (out / "result.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def make_server_app(settings: FedSettings | None = None) -> ServerApp:
    """A ServerApp; ``settings`` given (simulation) or read from run config ``settings-file``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings
        if s is None:
            path = str(context.run_config.get("settings-file", ""))
            if not path:
                raise ConfigError("run config 'settings-file' (a FedSettings JSON) is not set")
            s = FedSettings.from_json(Path(path).read_text())
        run_server(grid, s)

    return app


# Components of the deployed Flower app (see emgdx.federated.run.write_app).
client_app = make_client_app()
server_app = make_server_app()
