"""The one training loop: any registered architecture, any dataset kind, one or many processes.

Output folder (``train.out``)::

    config.yaml          the validated config of the run
    last.safetensors     latest weights (EMA ones when ``train.ema > 0``), a demixer checkpoint
    best.safetensors     weights with the best validation score so far
    state.pt, optimizer.pt   everything needed to resume exactly (tensors only, loaded with weights_only);
                             the optimizer's moments are kept apart so that neither file doubles the model's size
    train.csv valid.csv  logs; tensorboard/ event files

Checkpoints made by this loop work with ``demixer separate -n PATH``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from ..devices import resolve_device
from ..errors import ConfigError, DemixerError, ModelNotFoundError
from ..files import atomic_path
from ..models.base import SeparationModel
from ..models.checkpoint import build_model, save_checkpoint
from . import distributed
from .config import TrainConfig, dump_config
from .datasets import build_datasets
from .logs import Logs
from .losses import TrainingLoss, neg_sdr, neg_si_sdr, pit_loss, window_sdr

STATE = "state.pt"
OPTIMIZER = "optimizer.pt"
SILENT = 1e-8  # mean-square power under which a reference is silent and left out of metrics
SELECT_METRICS = ("sdr", "si_sdr", "sdr_median")  # train.select, as stored in state.pt (an index)


@dataclass
class TrainResult:
    out: Path
    epoch: int
    step: int
    best_score: float | None
    valid: dict[str, float] = field(default_factory=dict)
    finished: bool = True
    seconds: float = 0.0

    @property
    def last(self) -> Path:
        return self.out / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.out / "best.safetensors"


class _EpochSampler(torch.utils.data.Sampler[int]):
    """This process's share of an epoch's indices, optionally skipping the batches already done."""

    def __init__(self, items: int, rank: int, world: int, skip: int = 0) -> None:
        per_rank = items // world
        self.indices = list(range(rank, per_rank * world, world))[skip:]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _lr_lambda(cfg: TrainConfig, total_steps: int, time_spent=None):
    """The learning-rate factor at a step: linear warm-up, then constant or cosine down to ``min_lr_ratio``,
    over the steps or, with ``schedule.minutes``, over the share of that time ``time_spent()`` reports."""
    warm, kind, floor = cfg.schedule.warmup_steps, cfg.schedule.kind, cfg.schedule.min_lr_ratio

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        if time_spent is not None:
            progress = min(1.0, time_spent())
        else:
            progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _warmup_ema(decay: float):
    """EMA whose decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average follows the model early in training instead of staying near the initial weights."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        d = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged)))
        floats = [(e, p) for e, p in zip(ema_params, params) if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], 1 - d)
        for e, p in zip(ema_params, params):
            if not e.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
                e.copy_(p)

    return update


def _atomic_save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class Trainer:
    """Train the model a :class:`TrainConfig` describes.

    Args:
        config: validated config.
        resume: continue the run in ``config.train.out`` (error if there is none).
        overwrite: start afresh even if ``config.train.out`` holds a run.
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> None:
        self.cfg = config
        self.out = Path(config.train.out)
        state_file = self.out / STATE
        if resume and not state_file.exists():
            raise ConfigError(f"nothing to resume: {state_file} does not exist")
        if not resume and not overwrite and state_file.exists():
            raise ConfigError(f"{self.out} already holds a run: pass --resume to continue it or --overwrite to restart")
        self.resume = resume
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.device = torch.device(resolve_device(config.train.device))
        if self.device.type == "cuda" and distributed.launched_by_torchrun():
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(self.device)
        self.dist = distributed.setup(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # training batches have one shape: let cuDNN pick its fastest kernels
        torch.manual_seed(config.train.seed)
        try:
            self.model: SeparationModel = build_model(config.model.architecture, config.model.config).to(self.device)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"model.config: {exc}") from None
        if config.model.init and not resume:
            self._init_from(Path(config.model.init))
        self.train_set, self.valid_set = build_datasets(config.data, self.model, config.train.seed)
        self.loss = TrainingLoss(config.loss.terms, pit=config.loss.pit)
        self.steps_per_epoch = (len(self.train_set) // self.dist.world) // config.data.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"data.items_per_epoch ({len(self.train_set)}) is smaller than one batch "
                f"({config.data.batch_size} x {self.dist.world} processes)"
            )
        self.total_steps = self.steps_per_epoch * config.schedule.epochs
        self.net = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.active
            else self.model
        )
        o = config.optim
        opt_cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.elapsed = 0.0  # seconds of training, all sessions of the run together
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(config, self.total_steps, self._time_spent if config.schedule.minutes else None)
        )
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=_warmup_ema(config.train.ema), use_buffers=True)
            if config.train.ema > 0
            else None
        )
        self.amp_dtype = None
        if config.train.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_score: float | None = None
        self.select = self._auto_select() if config.train.select == "auto" else config.train.select
        self.logs: Logs | None = None

    def _time_spent(self) -> float:
        """The share of ``schedule.minutes`` spent, all sessions of the run together (0 before ``fit`` starts)."""
        minutes = self.cfg.schedule.minutes
        return self.elapsed / (minutes * 60) if minutes else 0.0

    def _minutes_spent(self) -> bool:
        """Whether a run with ``schedule.minutes`` has had its time."""
        return self.cfg.schedule.minutes is not None and self._time_spent() >= 1

    def _init_from(self, path: Path) -> None:
        """Start from the weights of a finished run (``model.init``)."""
        from safetensors.torch import load_file

        from ..models.checkpoint import read_metadata

        try:
            meta = read_metadata(path)
        except (OSError, ModelNotFoundError) as exc:
            raise ConfigError(f"model.init: {exc}") from None
        if meta["architecture"] != self.cfg.model.architecture:
            raise ConfigError(
                f"model.init: {path} is a {meta['architecture']} checkpoint, not {self.cfg.model.architecture}"
            )
        weights = load_file(str(path))
        if not self.cfg.model.init_strict:
            own = self.model.state_dict()
            fits = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
            if not fits:
                raise ConfigError(f"model.init: no tensor of {path} fits model.config")
            left = sorted(set(own) - set(fits))
            if left and self.cfg.train.progress:
                print(
                    f"model.init: {len(fits)} tensors from {path}; freshly initialised: {', '.join(left)}", flush=True
                )
            weights = {**own, **fits}
        try:
            self.model.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ConfigError(
                f"model.init: {path} does not fit model.config: {str(exc).splitlines()[0]} "
                "(model.init_strict: false takes the tensors that fit)"
            ) from None

    def _auto_select(self) -> str:
        return "si_sdr" if self.cfg.loss.pit or self.cfg.data.kind != "stems" else "sdr"

    # ----------------------------------------------------------------------------- state
    def _weights_model(self) -> SeparationModel:
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def _state(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": torch.tensor([self.epoch, self.batch_in_epoch, self.step]),
            "best_score": torch.tensor(float("nan") if self.best_score is None else self.best_score),
            "best_metric": torch.tensor(SELECT_METRICS.index(self.select)),
            "elapsed": torch.tensor(self.elapsed),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_state(self) -> None:
        state = torch.load(self.out / STATE, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        optimizer = torch.load(self.out / OPTIMIZER, map_location=self.device, weights_only=True)
        if not torch.equal(optimizer["progress"].cpu(), state["progress"].cpu()):
            raise ConfigError(f"{self.out}: {OPTIMIZER} and {STATE} are from different steps (a save was interrupted)")
        self.optimizer.load_state_dict(optimizer["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.batch_in_epoch, self.step = (int(v) for v in state["progress"])
        best = float(state["best_score"])
        self.best_score = None if math.isnan(best) else best
        # a state without best_metric was saved before train.select existed: it selected by the automatic metric
        stored = SELECT_METRICS[int(state["best_metric"])] if "best_metric" in state else self._auto_select()
        if stored != self.select and self.best_score is not None:
            if self.dist.main and self.cfg.train.progress:
                print(
                    f"train.select is now {self.select} (the best so far was by {stored}): "
                    f"the next validation sets a new best.safetensors",
                    flush=True,
                )
            self.best_score = None
        self.elapsed = float(state["elapsed"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)
        if self.logs is None:
            raise RuntimeError("the run's state is loaded after fit() opened its logs")
        self.logs.resume_at(self.step)

    def _card(self, valid: dict[str, float] | None) -> dict[str, Any]:
        return {
            "training": {
                "epoch": self.epoch,
                "step": self.step,
                "seconds": round(self.elapsed, 1),
                "processes": self.dist.world,
                "device": str(self.device),
                "host_cpu": platform.processor() or platform.machine(),
                "config": self.cfg.model_dump(mode="json"),
            },
            "validation": valid or {},
        }

    def _save(self, valid: dict[str, float] | None = None, best: bool = False) -> None:
        if not self.dist.main:
            return
        state = self._state()
        _atomic_save({"optimizer": self.optimizer.state_dict(), "progress": state["progress"]}, self.out / OPTIMIZER)
        _atomic_save(state, self.out / STATE)
        save_checkpoint(self._weights_model(), self.out / "last.safetensors", extra=self._card(valid))
        if best:
            save_checkpoint(self._weights_model(), self.out / "best.safetensors", extra=self._card(valid))

    # ----------------------------------------------------------------------------- loops
    def _loader(self, dataset, skip_batches: int, shuffle_seed: int) -> DataLoader:
        bs = self.cfg.data.batch_size
        sampler = _EpochSampler(len(dataset), self.dist.rank, self.dist.world, skip_batches * bs)
        gen = torch.Generator().manual_seed(shuffle_seed)  # worker seeds drawn here, not from the global RNG
        return DataLoader(
            dataset,
            batch_size=bs,
            sampler=sampler,
            drop_last=True,
            num_workers=self.cfg.data.workers,
            generator=gen,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def _forward(self, net, mix: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
        """The model's estimate; ``conditions`` (enrolment clips, ...) follow the mixture."""
        conditions = tuple(c.to(self.device, non_blocking=True) for c in conditions)
        if self.amp_dtype is not None:
            with torch.autocast("cuda", dtype=self.amp_dtype):
                return net(mix, *conditions).float()
        return net(mix, *conditions)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss, SDR and SI-SDR per source on the validation set (silent references left out), and the median
        SDR over 1 s windows (``sdr_median``: silent windows left out, as museval does)."""
        model = self._weights_model()
        model.eval()
        n = len(self.model.sources)
        sums = torch.zeros(3 * n + 2, dtype=torch.float64)  # sdr, si_sdr, count per source; loss sum, batches
        indices = list(range(self.dist.rank, len(self.valid_set), self.dist.world))
        loader = DataLoader(
            torch.utils.data.Subset(self.valid_set, indices), batch_size=1, num_workers=self.cfg.data.workers
        )
        windows: list[list[torch.Tensor]] = [[] for _ in range(n)]  # per source: SDR of every 1 s window
        for mix, ref, *conditions in loader:
            mix, ref = mix.to(self.device), ref.to(self.device)
            est = self._forward(model, mix, *conditions)
            sums[-2] += float(self.loss(est, ref))
            sums[-1] += 1
            if self.cfg.loss.pit:
                perm = pit_loss(self.loss.per_item, reference=ref, estimate=est)[1]
                est = torch.stack([est[b, perm[b]] for b in range(est.shape[0])])
            active = (ref.pow(2).mean(dim=(-2, -1)) > SILENT).double().cpu()  # [B, S]
            sdr = (-neg_sdr(est, ref)).double().cpu()
            si = (-neg_si_sdr(est, ref)).double().cpu()
            sums[:n] += (sdr * active).sum(0)
            sums[n : 2 * n] += (si * active).sum(0)
            sums[2 * n : 3 * n] += active.sum(0)
            per_window = window_sdr(est, ref, self.model.sample_rate, SILENT).double().cpu()  # [B, S, n]
            for i in range(n):
                windows[i].append(per_window[:, i].flatten())
        sums = distributed.all_sum(sums.to(self.device), self.dist).cpu()
        medians = {}
        for i, name in enumerate(self.model.sources):
            values = distributed.all_cat(
                torch.cat(windows[i]) if windows[i] else torch.zeros(0, dtype=torch.float64), self.dist
            )
            values = values[~values.isnan()]
            if len(values):
                medians[f"sdr_median_{name}"] = float(values.median())
        model.train()
        out: dict[str, float] = {"loss": float(sums[-2] / sums[-1].clamp(min=1))}
        for i, name in enumerate(self.model.sources):
            count = float(sums[2 * n + i])
            if count:
                out[f"sdr_{name}"] = float(sums[i]) / count
                out[f"si_sdr_{name}"] = float(sums[n + i]) / count
        out.update(medians)
        for metric in ("sdr", "si_sdr", "sdr_median"):
            vals = [out[f"{metric}_{name}"] for name in self.model.sources if f"{metric}_{name}" in out]
            if vals:
                out[metric] = float(np.mean(vals))
        return out

    def fit(self) -> TrainResult:
        """Run (or continue) training until ``schedule.epochs`` (or ``schedule.minutes``) or ``train.max_minutes``."""
        cfg = self.cfg
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if not self.resume:  # --overwrite: no file of the previous run may survive into this one
                import shutil

                for name in (STATE, OPTIMIZER, "last.safetensors", "best.safetensors", "train.csv", "valid.csv"):
                    (self.out / name).unlink(missing_ok=True)
                shutil.rmtree(self.out / "tensorboard", ignore_errors=True)
            (self.out / "config.yaml").write_text(dump_config(cfg))
        distributed.barrier(self.dist)
        self.logs = Logs(self.out, cfg.train.tensorboard, enabled=self.dist.main)
        if self.resume:
            self._load_state()
        distributed.barrier(self.dist)
        start = time.monotonic() - self.elapsed
        session_from = self.elapsed
        timed = cfg.schedule.minutes is not None or cfg.train.max_minutes is not None

        def clock() -> float:
            """Seconds of training so far: rank 0's when the run is timed, so that all ranks stop at one step."""
            now = time.monotonic() - start
            return distributed.from_main(now, self.dist, self.device) if timed else now

        valid: dict[str, float] = {}
        self.net.train()
        try:
            while self.epoch < cfg.schedule.epochs and not self._minutes_spent():
                self.train_set.set_epoch(self.epoch)
                loader = self._loader(self.train_set, self.batch_in_epoch, cfg.train.seed * 100003 + self.epoch)
                bar = None
                if cfg.train.progress and self.dist.main:
                    from tqdm import tqdm

                    bar = tqdm(
                        total=self.steps_per_epoch,
                        initial=self.batch_in_epoch,
                        desc=f"epoch {self.epoch + 1}/{cfg.schedule.epochs}",
                        unit="step",
                        leave=False,
                    )
                running = []
                for mix, ref, *conditions in loader:
                    mix, ref = mix.to(self.device, non_blocking=True), ref.to(self.device, non_blocking=True)
                    loss = self.loss(self._forward(self.net, mix, *conditions), ref)
                    if not torch.isfinite(loss):
                        raise DemixerError(
                            f"training diverged at step {self.step}: loss is {float(loss)}; lower optim.lr"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self.optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip or float("inf"))
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.scheduler.step()
                    if self.ema is not None:
                        self.ema.update_parameters(self.model)
                    self.step += 1
                    self.batch_in_epoch += 1
                    running.append(float(loss.detach()))
                    if bar is not None:
                        bar.update()
                        bar.set_postfix(loss=f"{np.mean(running[-20:]):.4f}")
                    if self.step % cfg.train.log_every == 0:
                        self.logs.log(
                            "train",
                            self.step,
                            {
                                "epoch": self.epoch,
                                "loss": float(np.mean(running[-cfg.train.log_every :])),
                                "grad_norm": float(norm),
                                "lr": self.scheduler.get_last_lr()[0],
                            },
                        )
                    self.elapsed = clock()
                    every = cfg.train.checkpoint_every_steps
                    timed_out = (
                        cfg.train.max_minutes is not None and self.elapsed - session_from > cfg.train.max_minutes * 60
                    )
                    if (every and self.step % every == 0) or timed_out:
                        self._save(valid or None)
                    if timed_out:
                        return self._result(valid, finished=False)
                    if self._minutes_spent():  # the epoch in progress ends here, validated and saved
                        break
                if bar is not None:
                    bar.close()
                self.epoch += 1
                self.batch_in_epoch = 0
                valid = self.validate()
                score = valid.get(self.select)
                improved = score is not None and (self.best_score is None or score > self.best_score)
                if improved:
                    self.best_score = score
                self.elapsed = clock()
                self.logs.log("valid", self.step, {"epoch": self.epoch, "seconds": round(self.elapsed, 1), **valid})
                self._save(valid, best=improved)
                if self.dist.main and cfg.train.progress:
                    shown = ", ".join(f"{k} {v:.3f}" for k, v in valid.items() if k in ("loss", "sdr", "si_sdr"))
                    print(
                        f"epoch {self.epoch}/{cfg.schedule.epochs}: {shown}" + (" (best)" if improved else ""),
                        flush=True,
                    )
            return self._result(valid, finished=True)
        finally:
            self.logs.close()
            distributed.barrier(self.dist)

    def _result(self, valid: dict[str, float], finished: bool) -> TrainResult:
        return TrainResult(self.out, self.epoch, self.step, self.best_score, valid, finished, self.elapsed)


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or resume) the run a config describes; returns where its checkpoints are."""
    trainer = Trainer(config, resume=resume, overwrite=overwrite)
    try:
        return trainer.fit()
    finally:
        distributed.teardown()
