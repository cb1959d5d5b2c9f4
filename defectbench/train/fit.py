"""Supervised fine-tuning with optional knowledge distillation, selection on `dev`, resumable."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from defectbench.errors import ConfigError, DataError, TrainingDivergedError
from defectbench.io import atomic_write_bytes
from defectbench.metrics.ranking import roc_auc
from defectbench.train.augment import augment_batch
from defectbench.train.config import DistillConfig, TrainConfig, check_distillable


@dataclass(frozen=True)
class FitResult:
    best_epoch: int
    best_dev_auroc: float
    history: list[dict]
    train_seconds: float
    resumed_from_epoch: int
    # training time of the finished epochs an interrupted run left (0 when not resumed); the
    # epoch it was killed in is lost, so a resumed build's times are lower bounds
    seconds_before_resume: float = 0.0

    def to_dict(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            "best_dev_auroc": self.best_dev_auroc,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "resumed_from_epoch": self.resumed_from_epoch,
            "seconds_before_resume": self.seconds_before_resume,
        }


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    config: DistillConfig,
    class_weight: torch.Tensor | None,
) -> torch.Tensor:
    """`labels`: class indices, or per-class target probabilities (soft targets)."""
    if teacher_logits.shape != student_logits.shape:
        # kl_div broadcasts an (n, 1) teacher against (n, 2) students without a word
        raise ConfigError(
            f"teacher logits of shape {tuple(teacher_logits.shape)} do not pair with student "
            f"logits of shape {tuple(student_logits.shape)}: give one teacher row per image, "
            "one column per class"
        )
    ce = F.cross_entropy(student_logits, labels, weight=class_weight)
    if config.mode == "hard":
        return 0.5 * ce + 0.5 * F.cross_entropy(
            student_logits, teacher_logits.argmax(1), weight=class_weight
        )
    t = config.temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return config.alpha * t * t * kl + (1 - config.alpha) * ce


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Eval-mode logits for a preprocessed float32 NCHW array."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(x[start : start + batch_size]).contiguous(
            memory_format=torch.channels_last
        )
        out.append(model(batch).float().numpy())
    return np.concatenate(out)


def defect_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax defect probability for ranking `dev` while training (AUROC, best epoch).

    Not `runtime.predictor.defect_probability`, whose float32 tanh form every scored result
    uses: switching would round some scores differently, could turn an AUROC tie and with it
    the chosen epoch, and so change weights that existing zoo keys promise.
    """
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p[:, 1] / p.sum(axis=1)).astype(np.float64)


def _binary_labels(labels: object, name: str, count: int, description: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (count,):
        raise ConfigError(
            f"{description}: {name} has shape {y.shape} for {count} images; give one label "
            "per image, in the images' order"
        )
    integral = y.dtype == bool or np.issubdtype(y.dtype, np.integer)
    if not integral or not np.isin(y, (0, 1)).all():
        # a 2 made a three-class weight and a torch error; a -1 a bincount error
        found = list(dict.fromkeys(y.ravel().tolist()))
        try:
            found.sort()
        except TypeError:  # None beside ints (an object array): as they come
            pass
        found = found[:5]
        raise ConfigError(
            f"{description}: {name} must be integer class labels 0 (good) or 1 (defective), "
            f"got dtype {y.dtype} with values {found}"
        )
    return y


def _check_training_data(train_x, train_y, dev_x, dev_y, description: str) -> None:
    """Refuse data that would fail only after an epoch of training, or train nothing."""
    y = _binary_labels(train_y, "train_y", len(train_x), description)
    dev = _binary_labels(dev_y, "dev_y", len(dev_x), description)
    if isinstance(train_x, np.ndarray) and (train_x.dtype != np.float32 or train_x.ndim != 4):
        raise ConfigError(
            f"{description}: train_x must be a float32 (N, 3, H, W) array (what Preprocess "
            f"returns), got {train_x.dtype} of shape {train_x.shape}"
        )
    for name, labels in (("training", y), ("dev", dev)):
        defective = int(np.count_nonzero(labels))
        if defective in (0, len(labels)):
            # a train set of one class trains a constant; a dev set of one class has no
            # AUROC, which was found only after the first epoch had been trained
            # (both classes also means at least 2 images, so not every batch is one image
            # long and dropped for batch norm, which trained nothing and reported loss 0)
            raise DataError(
                f"{description}: the {name} set holds {defective} defective and "
                f"{len(labels) - defective} good images; it needs both classes"
            )


def _checked_teacher_logits(teacher_logits: object, count: int) -> np.ndarray:
    """The teacher's logits as float32 (count, 2), or a ConfigError saying what is wrong."""
    logits = np.asarray(teacher_logits, dtype=np.float32)
    if logits.shape[:1] != (count,):
        # rows are paired with images by position: a longer or shorter array would distil
        # each image towards another image's teacher output
        raise ConfigError(
            f"teacher_logits has {logits.shape[0] if logits.ndim else 0} "
            f"rows for {count} training images; compute them on the same training set, "
            "in the same order"
        )
    if logits.shape != (count, 2):
        # (n, 1) broadcast against the student's two columns (soft) or made every argmax
        # 'good' (hard) without an error
        raise ConfigError(
            f"teacher_logits has shape {logits.shape}, not ({count}, 2): one logit per class "
            "(good, defective) of a two-class teacher, as predict_logits returns them"
        )
    if not np.isfinite(logits).all():
        raise ConfigError(
            f"teacher_logits holds {int((~np.isfinite(logits)).sum())} non-finite values; "
            "recompute them from a teacher whose outputs are finite"
        )
    return logits


def _class_weight(labels: np.ndarray, mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    # inverse frequency, normalised so the mean weight per sample stays 1
    weight = counts.sum() / (2 * np.maximum(counts, 1))
    return torch.tensor(weight, dtype=torch.float32)


def _training_targets(
    labels: np.ndarray, probability: np.ndarray | None, targets: str
) -> torch.Tensor:
    """Class indices, or (n, 2) target distributions [1 - p, p] from annotated probabilities."""
    if targets == "labels":
        if probability is not None:  # would train on the labels without a word
            raise ConfigError(
                "train_probability= was given, but the recipe trains on targets='labels', so "
                "it would be ignored; set targets='annotator_probability' to train on it, or "
                "leave it out"
            )
        return torch.from_numpy(labels.astype(np.int64))
    if probability is None:
        raise ConfigError(
            f"targets={targets!r} needs the annotated defect probability of each training image "
            "(train_probability=); pass it, or train on targets='labels'"
        )
    p = np.asarray(probability, dtype=np.float64)
    if p.shape != labels.shape or not np.all((p >= 0) & (p <= 1)):
        raise ConfigError(
            f"train_probability must hold one probability in [0, 1] per training image "
            f"(shape {labels.shape}); got shape {p.shape}, range "
            f"[{np.nanmin(p) if p.size else 'empty'}, {np.nanmax(p) if p.size else 'empty'}]"
        )
    return torch.from_numpy(np.stack([1 - p, p], axis=1).astype(np.float32))


def fit(
    model: torch.nn.Module,
    train_x: np.ndarray,
    train_y: np.ndarray,
    dev_x: np.ndarray,
    dev_y: np.ndarray,
    config: TrainConfig,
    *,
    distill: DistillConfig | None = None,
    teacher_logits: np.ndarray | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_key: str | None = None,
    train_probability: np.ndarray | None = None,
    description: str = "train",
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train `model` in place; leave it holding the weights of the best dev-AUROC epoch (the
    earliest of tied epochs).

    With `config.ema_decay` the moving average of the weights is what `dev` scores each
    epoch and what the model is left holding.

    With `checkpoint_path`, the state after each epoch is saved atomically and a later call
    with the same path resumes from it, so an interrupted build loses at most one epoch.
    `checkpoint_key` (required with it) names what is being trained (the variant key): a
    saved state made under another key (the recipe, data or libraries changed since) or one
    that cannot be read is reported and ignored, never resumed from. `train_probability` is
    the annotated defect probability of each training image, which
    `config.targets == "annotator_probability"` trains on (and only then may be given).

    Refused before the first step: labels other than 0/1, a train or dev set without both
    classes, teacher logits that are not finite (n, 2); stopped at the first non-finite
    training loss (`TrainingDivergedError`), before it reaches the weights.
    """
    if checkpoint_path is not None and checkpoint_key is None:
        # every state would be saved and matched under None: a later run of another recipe
        # with the same path would resume this one's weights, optimiser and schedule
        raise ConfigError(
            f"{description}: checkpoint_path= needs checkpoint_key=, a string naming what is "
            "trained (the zoo passes the variant's lineage key), so a state saved for another "
            "recipe is never resumed"
        )
    _check_training_data(train_x, train_y, dev_x, dev_y, description)
    train_y, dev_y = np.asarray(train_y), np.asarray(dev_y)  # lists work like arrays
    if distill is not None and teacher_logits is None:
        raise ConfigError(
            "distillation needs the teacher's logits on the training set (teacher_logits=); "
            "pass them, or fit without distill="
        )
    if teacher_logits is not None and distill is None:  # would train a no-KD model silently
        raise ConfigError(
            "teacher_logits= was given without distill=, so they would be ignored; pass a "
            "DistillConfig to distil, or leave the logits out"
        )
    check_distillable(config, distill)
    if teacher_logits is not None:
        teacher_logits = _checked_teacher_logits(teacher_logits, len(train_x))
    targets_t = _training_targets(train_y, train_probability, config.targets)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(memory_format=torch.channels_last)
    class_weight = _class_weight(train_y, config.class_balance)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    ema = _weight_average(model, config.ema_decay)
    start_epoch, history, best = 0, [], {"epoch": -1, "auroc": -math.inf, "state": None}
    elapsed_before = 0.0
    state = _resumable_state(checkpoint_path, checkpoint_key, with_ema=ema is not None)
    mismatch = state is not None and _shape_mismatch(model, state["model"])
    if mismatch:
        # checked before loading: load_state_dict copies what fits before it raises, which
        # would leave the model half overwritten
        warnings.warn(
            f"ignoring training state {checkpoint_path}: it does not fit this model "
            f"({mismatch}); training starts from the first epoch",
            stacklevel=2,
        )
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        # dropout and drop-path draw from the global RNG: without this a resumed run would
        # replay the first epoch's masks and differ from an uninterrupted one
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = int(state["epoch"]) + 1, _copy_history(state["history"])
        best = {
            "epoch": int(state["best_epoch"]),
            "auroc": float(state["best_auroc"]),
            "state": state["best_state"],
        }
        elapsed_before = float(state["elapsed"])
        # said, not only shown by a progress bar starting part-way
        # killed after its last epoch (while scoring or saving): not "epoch 9 of 8"
        where = (f"all {config.epochs} epochs were trained; finishing"
                 if start_epoch >= config.epochs
                 else f"resuming from epoch {start_epoch + 1} of {config.epochs}")
        print(f"{description}: {where} ({checkpoint_path})", file=sys.stderr, flush=True)
    resumed_from = start_epoch
    teacher_t = torch.from_numpy(teacher_logits).float() if teacher_logits is not None else None
    autocast = _training_autocast(config.mixed_precision, description)
    t0 = time.perf_counter()
    epochs = tqdm(
        range(start_epoch, config.epochs),
        desc=description,
        unit="epoch",
        initial=start_epoch,
        total=config.epochs,
    )
    for epoch in epochs:
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        running, seen = 0.0, 0
        # the rate of the epoch's last step: after it the scheduler already holds the next
        # step's, which after the last epoch lies past the end of the one-cycle schedule
        lr_used = optimizer.param_groups[0]["lr"]
        batches = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", leave=False, unit="batch")
        for b in batches:
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            if len(idx) < 2:  # a batch of one breaks batch norm; drop it
                continue
            x = augment_batch(torch.from_numpy(train_x[idx.numpy()]), config.augment, generator)
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(x)
            # the loss in float32: log-softmax and KL of near-equal bf16 logits lose digits
            logits = logits.float()
            if logits.shape != (len(idx), 2):
                # one logit (a sigmoid head) failed inside cross_entropy on a class-weight
                # length; three trained silently with defect_probability reading column 1
                raise ConfigError(
                    f"{description}: the model returns logits of shape "
                    f"{tuple(logits.shape)} for a batch of {len(idx)} images; training needs "
                    "two logits per image (good, defective): create it with num_classes=2"
                )
            if distill is None:
                loss = F.cross_entropy(
                    logits,
                    targets_t[idx],
                    weight=class_weight,
                    label_smoothing=config.label_smoothing,
                )
            else:
                loss = distillation_loss(
                    logits, targets_t[idx], teacher_t[idx], distill, class_weight
                )
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                # checked before the step: its nan gradients would make every weight nan, the
                # remaining epochs would run for nothing and `dev` would quietly fall back on
                # an earlier epoch (the last saved state stays resumable)
                raise TrainingDivergedError(
                    f"{description}: the training loss is {loss_value} at epoch {epoch + 1}, "
                    f"batch {b + 1} of {steps_per_epoch} (learning rate "
                    f"{scheduler.get_last_lr()[0]:.3g}, recipe lr {config.lr}); training "
                    "diverged: lower the learning rate, or check the inputs for inf or nan"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr_used = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            if ema is not None:  # step 1 copies the weights, later steps average at the decay
                ema.update(model, step=epoch * steps_per_epoch + b + 1)
            running += loss_value * len(idx)
            seen += len(idx)
            batches.set_postfix(loss=f"{running / seen:.4f}")
        scored = model if ema is None else ema.module
        dev_auroc = roc_auc(dev_y, defect_probability(predict_logits(scored, dev_x)))
        record = {
            "epoch": epoch,
            "train_loss": running / max(seen, 1),
            "dev_auroc": dev_auroc,
            "lr": lr_used,
        }
        history.append(record)
        if dev_auroc > best["auroc"]:
            best = {"epoch": epoch, "auroc": dev_auroc, "state": copy.deepcopy(scored.state_dict())}
        epochs.set_postfix(loss=f"{record['train_loss']:.4f}", dev_auroc=f"{dev_auroc:.4f}")
        if on_epoch:
            on_epoch(record)
        if checkpoint_path is not None:
            _save_checkpoint(
                checkpoint_path,
                model,
                ema,
                optimizer,
                scheduler,
                generator,
                epoch,
                history,
                best,
                elapsed_before + time.perf_counter() - t0,
                checkpoint_key,
            )
    if best["state"] is None:
        raise TrainingDivergedError(
            f"{description}: no epoch produced a finite dev AUROC (training diverged: "
            f"last train loss {history[-1]['train_loss']:.4g}); lower the learning rate"
        )
    model.load_state_dict(best["state"])
    model.eval()
    return FitResult(
        best["epoch"],
        best["auroc"],
        history,
        elapsed_before + time.perf_counter() - t0,
        resumed_from,
        elapsed_before,
    )


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX) rather than emulating it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _training_autocast(mixed_precision: str | None, description: str):
    """The context the forward pass runs in: CPU autocast for bf16, or nothing."""
    if mixed_precision is None:
        return contextlib.nullcontext()
    if not cpu_has_native_bf16():
        # still correct, only slower: oneDNN emulates bf16 without AVX512-BF16 or AMX
        warnings.warn(
            f"{description}: the recipe trains in bf16 mixed precision, but this CPU has no "
            "native bf16 (AVX512-BF16 or AMX), so each step may be slower than in float32; "
            "the result is the recipe's, only the time differs",
            stacklevel=3,
        )
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _weight_average(model: torch.nn.Module, decay: float | None):
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    # fixed decay, no warmup schedule: the first update copies the weights (step 1), so the
    # average never carries the head's random initialisation
    return ModelEmaV3(model, decay=decay)


def _copy_history(history) -> list[dict]:
    return [dict(h) for h in history]


_STATE_FIELDS = frozenset(
    ("model", "optimizer", "scheduler", "generator", "torch_rng", "key", "epoch", "history",
     "best_epoch", "best_auroc", "best_state", "elapsed")
)


def _shape_mismatch(model: torch.nn.Module, saved: object) -> str:
    """What keeps `saved` (a state_dict) from loading into `model`; '' if nothing."""
    if not isinstance(saved, dict):
        return "its model state is not a state_dict"
    own = model.state_dict()
    if set(own) != set(saved):
        extra, missing = set(saved) - set(own), set(own) - set(saved)
        return f"tensors differ: {len(missing)} missing, {len(extra)} unexpected"
    # parameters only: quantization observers resize their buffers (empty until calibrated)
    # as they load, and a model pruned to other shapes differs in its parameters anyway
    for name, tensor in model.named_parameters():
        shape = getattr(saved.get(name), "shape", None)
        if shape != tensor.shape:
            return f"{name} has shape {tuple(shape or ())}, not {tuple(tensor.shape)}"
    return ""


# A training state is this header, the sha256 of the torch.save payload, then the payload:
# torch.load does not check its own bytes, so a flipped bit in a weight would be resumed from
# and end up in the built model; one file keeps state and checksum in step (a sidecar written
# beside it could be from the epoch before when a build is killed between the two writes).
_STATE_MAGIC = b"defectbench-train-state/1\n"


def read_training_state(path: Path) -> dict:
    """The dict `fit` saved at `path`; ValueError if it is damaged or not such a file."""
    data = Path(path).read_bytes()
    head, digest = len(_STATE_MAGIC), len(_STATE_MAGIC) + 32
    if not data.startswith(_STATE_MAGIC):
        raise ValueError("not a defectbench training state (an older format or a foreign file)")
    if hashlib.sha256(data[digest:]).digest() != data[head:digest]:
        raise ValueError("its bytes do not match the sha256 recorded in it: damaged")
    return torch.load(io.BytesIO(data[digest:]), weights_only=True)


def _resumable_state(path: Path | None, key: str | None, with_ema: bool = False) -> dict | None:
    """The saved training state at `path` if it was made under `key`; None (reported) if not."""
    if path is None or not path.is_file():
        return None
    try:
        state = read_training_state(path)
    except Exception as err:  # damaged, truncated, or not a torch file
        problem = f"{type(err).__name__}: {err}"
    else:
        required = _STATE_FIELDS | {"ema"} if with_ema else _STATE_FIELDS
        missing = sorted(required - set(state)) if isinstance(state, dict) else ["all"]
        problem = f"it lacks {', '.join(missing)}: an older or foreign file" if missing else ""
    if problem:
        warnings.warn(
            f"ignoring unreadable training state {path} ({problem}); training starts from the "
            "first epoch",
            stacklevel=3,
        )
        return None
    if state.get("key") != key:
        warnings.warn(
            f"ignoring training state {path}: it was saved for key {state.get('key')!r}, not "
            f"{key!r} (the recipe, a parent's weights, the data, the library versions, the "
            "processor or the thread count changed); training starts from the first epoch",
            stacklevel=3,
        )
        return None
    return state


def _save_checkpoint(
    path, model, ema, optimizer, scheduler, generator, epoch, history, best, elapsed, key
):
    buffer = io.BytesIO()
    extra = {} if ema is None else {"ema": ema.module.state_dict()}
    torch.save(
        {
            **extra,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "key": key,
            "epoch": epoch,
            "history": history,
            "best_epoch": best["epoch"],
            "best_auroc": best["auroc"],
            "best_state": best["state"],
            "elapsed": elapsed,
        },
        buffer,
    )
    payload = buffer.getvalue()
    atomic_write_bytes(path, _STATE_MAGIC + hashlib.sha256(payload).digest() + payload)
