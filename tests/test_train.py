"""Training pieces: KD loss, augmentation, resumable fit, checkpoint selection metric."""

import copy
import dataclasses
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from defectbench.errors import ConfigError, DataError, DefectbenchError, TrainingDivergedError
from defectbench.metrics.ranking import roc_auc
from defectbench.train.augment import augment_batch
from defectbench.train.config import AugmentConfig, DistillConfig, TrainConfig
from defectbench.train.fit import distillation_loss, fit, read_training_state


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=2, max_size=60))
def test_roc_auc_matches_scikit_learn(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    if y.min() == y.max():
        with pytest.raises(DataError, match="needs both classes"):
            roc_auc(y, s)
    else:
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_roc_auc_refuses_labels_other_than_0_1_and_marks_nan_scores():
    from defectbench.errors import DataError

    with pytest.raises(DataError, match="only 0/1"):
        roc_auc([0, 2, 1], [0.1, 0.9, 0.8])  # a 2 used to count as defective
    with pytest.raises(DataError, match="same length"):
        roc_auc([0, 1, 1], [0.1, 0.9])
    # an (n, 2) softmax crashed with an IndexError, an (n, 1) column was flattened silently
    softmax = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    for scores in (softmax, softmax[:, 1:]):
        with pytest.raises(DataError, match=r"one score per item \(1-D\), got shape \(3, \d\)"):
            roc_auc([0, 1, 1], scores)
    assert np.isnan(roc_auc([0, 1], [0.1, float("nan")]))  # fit skips such an epoch


def test_soft_distillation_loss_is_hinton_kd():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 2), torch.randn(8, 2)
    labels = torch.randint(0, 2, (8,))
    cfg = DistillConfig(teacher="t", temperature=3.0, alpha=0.6)
    p_t = F.softmax(teacher / 3, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / 3, 1))).sum(1).mean()
    expected = 0.6 * 9 * kl + 0.4 * F.cross_entropy(student, labels)
    assert distillation_loss(student, labels, teacher, cfg, None) == pytest.approx(float(expected))


def test_hard_distillation_uses_the_teacher_decision():
    student = torch.tensor([[2.0, 0.0]])
    teacher = torch.tensor([[0.0, 5.0]])  # teacher says defective
    cfg = DistillConfig(teacher="t", mode="hard")
    loss = distillation_loss(student, torch.tensor([0]), teacher, cfg, None)
    expected = 0.5 * F.cross_entropy(student, torch.tensor([0])) + 0.5 * F.cross_entropy(
        student, torch.tensor([1])
    )
    assert float(loss) == pytest.approx(float(expected))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "soft-ish"}, "distillation mode 'soft-ish'"),
        ({"temperature": 0}, "temperature must be > 0"),
        ({"alpha": 1.5}, "alpha must be in"),
    ],
)
def test_distill_config_validates(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DistillConfig(teacher="t", **kwargs)


def test_train_config_validates_and_round_trips():
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainConfig(epochs=0, img_size=64)
    with pytest.raises(ConfigError, match="class_balance 'oversample'"):
        TrainConfig(epochs=1, img_size=64, class_balance="oversample")
    with pytest.raises(ConfigError, match="targets 'severity' is not one of labels, annotator"):
        TrainConfig(epochs=1, img_size=64, targets="severity")
    with pytest.raises(ConfigError, match=r"ema_decay 1.0 outside \(0, 1\)"):
        TrainConfig(epochs=1, img_size=64, ema_decay=1.0)
    cfg = TrainConfig(epochs=2, img_size=64, augment=AugmentConfig(contrast=0.1))
    assert TrainConfig(**cfg.to_dict()) == cfg
    averaged = TrainConfig(epochs=2, img_size=64, ema_decay=0.99)
    assert TrainConfig(**averaged.to_dict()) == averaged


def test_an_unset_weight_average_stays_out_of_the_recipe_dict():
    # zoo keys hash this dict: a recipe that does not average must keep the key it had
    # before the option existed
    assert "ema_decay" not in TrainConfig(epochs=1, img_size=64).to_dict()
    assert TrainConfig(epochs=1, img_size=64, ema_decay=0.9).to_dict()["ema_decay"] == 0.9


def test_mixed_precision_validates_and_stays_out_of_float32_recipes():
    with pytest.raises(ConfigError, match="mixed_precision 'fp16' is not one of None, 'bf16'"):
        TrainConfig(epochs=1, img_size=64, mixed_precision="fp16")
    assert "mixed_precision" not in TrainConfig(epochs=1, img_size=64).to_dict()
    bf16 = TrainConfig(epochs=1, img_size=64, mixed_precision="bf16")
    assert bf16.to_dict()["mixed_precision"] == "bf16" and TrainConfig(**bf16.to_dict()) == bf16


class _RecordsDtypes(torch.nn.Module):
    """Records the dtype its linear layer computes in and the dtype of its weights."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 2)
        self.seen: set[tuple[torch.dtype, torch.dtype]] = set()

    def forward(self, x):
        out = self.head(x.mean((2, 3)))
        if self.training:
            self.seen.add((out.dtype, self.head.weight.dtype))
        return out


def test_bf16_mixed_precision_trains_in_bf16_and_keeps_float32_weights():
    x, y = _data()
    cfg = TrainConfig(epochs=2, img_size=16, batch_size=8, lr=0.05)
    plain, mixed = _RecordsDtypes(), _RecordsDtypes()
    fit(plain, x, y, x, y, cfg)
    result = fit(mixed, x, y, x, y, dataclasses.replace(cfg, mixed_precision="bf16"))
    assert plain.seen == {(torch.float32, torch.float32)}
    assert mixed.seen == {(torch.bfloat16, torch.float32)}
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    assert np.isfinite(result.best_dev_auroc)


def test_bf16_mixed_precision_warns_where_the_cpu_emulates_bf16(monkeypatch):
    import defectbench.train.fit as fit_module

    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, mixed_precision="bf16")
    monkeypatch.setattr(fit_module, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="this CPU has no native bf16"):
        fit(_Tiny(), x, y, x, y, cfg, description="slow")
    monkeypatch.setattr(fit_module, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(_Tiny(), x, y, x, y, cfg)


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.randn(6, 3, 32, 32)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    off = AugmentConfig(flips=False, rot90=False, max_rotation_deg=0, contrast=0, brightness=0)
    assert torch.equal(augment_batch(x, off, torch.Generator()), x)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).relu().mean((2, 3)))


class _TinyWithDropout(_Tiny):
    """Draws dropout masks from the global RNG, as Lite's head and ViT's drop-path do."""

    def forward(self, x):
        features = self.bn(self.conv(x)).relu().mean((2, 3))
        return self.head(torch.nn.functional.dropout(features, 0.5, self.training))


class _Diverged(_Tiny):
    def forward(self, x):
        return super().forward(x) * float("nan")


class _NanWhenScored(_Tiny):
    """Trains with a finite loss but scores nan on `dev` (eval mode)."""

    def forward(self, x):
        out = super().forward(x)
        return out if self.training else out * float("nan")


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32) + y[:, None, None, None] * 1.5
    return x.astype(np.float32), y.astype(np.int64)


def _unrelated_dev(n=64):
    """Labels unrelated to the images: dev AUROC moves whenever the scored weights do."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
    return x, rng.permutation(np.arange(n) % 2)


def test_fit_learns_and_keeps_the_best_dev_epoch():
    x, y = _data()
    model = _Tiny()
    result = fit(
        model,
        x,
        y,
        x,
        y,
        TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05),
        description="t",
    )
    best = max(h["dev_auroc"] for h in result.history)
    assert result.best_dev_auroc == best and result.history[result.best_epoch]["dev_auroc"] == best
    assert best > 0.9


def test_class_weights_are_sklearns_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    from defectbench.train.fit import _class_weight

    labels = np.array([0] * 30 + [1] * 10)  # ELPV-like imbalance: a quarter defective
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    np.testing.assert_allclose(_class_weight(labels, "weighted_loss").numpy(), expected,
                               rtol=1e-6)
    assert _class_weight(labels, "none") is None
    # a class absent from a tiny subset weighs as if it had one sample, not infinitely
    assert torch.isfinite(_class_weight(np.zeros(8, dtype=int), "weighted_loss")).all()


def test_fit_leaves_the_model_holding_the_best_epochs_weights_not_the_last():
    # dev labels inverted: the better the model learns train, the lower its dev AUROC, so the
    # best epoch is an early one; the weights each epoch was scored with are recorded as it ends
    x, y = _data()
    dev_x, dev_y = x, 1 - y
    model = _Tiny()
    scored = []
    result = fit(model, x, y, dev_x, dev_y,
                 TrainConfig(epochs=4, img_size=16, batch_size=8, lr=0.05), description="t",
                 on_epoch=lambda record: scored.append(copy.deepcopy(model.state_dict())))
    assert len(scored) == 4 and result.best_epoch != 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, scored[result.best_epoch][key]), key


class _Interrupt(Exception):
    pass


def _stop_in_second_epoch(record):
    if record["epoch"] == 1:  # epoch 0 was checkpointed, epoch 1 is lost
        raise _Interrupt


def _interrupted_fit(model_cls, ckpt, key, ema_decay=None):
    x, y = _data()
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05, ema_decay=ema_decay)
    torch.manual_seed(0)
    with pytest.raises(_Interrupt):
        fit(model_cls(), x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt,
            checkpoint_key=key, on_epoch=_stop_in_second_epoch)
    assert ckpt.is_file()
    return x, y, cfg


@pytest.mark.parametrize(
    "model_cls, ema_decay", [(_Tiny, None), (_TinyWithDropout, None), (_Tiny, 0.7)]
)
def test_interrupted_fit_resumes_to_the_same_weights(tmp_path, model_cls, ema_decay):
    # with a weight average, the average itself must come back from the checkpoint: restarted
    # from the current weights it would give other final weights
    ckpt = tmp_path / "state.pt"
    x, y, cfg = _interrupted_fit(model_cls, ckpt, "key-a", ema_decay)
    torch.manual_seed(0)
    straight = model_cls()
    uninterrupted = fit(straight, x, y, *_unrelated_dev(), cfg)
    torch.manual_seed(123)  # whatever ran in between must not matter
    resumed_model = model_cls()  # fresh weights: everything must come from the checkpoint
    result = fit(resumed_model, x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt,
                 checkpoint_key="key-a")
    assert result.resumed_from_epoch == 1
    assert 0 < result.seconds_before_resume < result.train_seconds
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    # every epoch's loss (data order, dropout masks) and dev score (the scored weights)
    for field in ("train_loss", "dev_auroc"):
        assert [h[field] for h in result.history] == pytest.approx(
            [h[field] for h in uninterrupted.history], rel=1e-6
        )
    for a, b in zip(
        straight.state_dict().values(), resumed_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_a_resumed_fit_says_so(tmp_path, capsys):
    ckpt = tmp_path / "state.pt"
    x, y, cfg = _interrupted_fit(_Tiny, ckpt, "key-a")
    capsys.readouterr()
    fit(_Tiny(), x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt, checkpoint_key="key-a",
        description="student")
    assert f"student: resuming from epoch 2 of 3 ({ckpt})" in capsys.readouterr().err


def test_a_fit_resumed_after_its_last_epoch_says_so(tmp_path, capsys):
    # a build killed after fit returned (scoring, converting, saving) resumes from a state
    # that holds every epoch: it said "resuming from epoch 4 of 3"
    ckpt = tmp_path / "state.pt"
    x, y = _data()
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05)
    first = fit(_Tiny(), x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt,
                checkpoint_key="key-a")
    capsys.readouterr()
    again = fit(_Tiny(), x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt,
                checkpoint_key="key-a", description="student")
    assert f"student: all 3 epochs were trained; finishing ({ckpt})" in capsys.readouterr().err
    assert again.resumed_from_epoch == 3 and again.history == first.history


def _stop_after_first_epoch(record):
    raise _Interrupt


def test_the_weight_average_is_what_dev_scores_and_the_model_keeps():
    x, y = _data(n=8)  # one step per epoch
    dev_x, dev_y = _unrelated_dev()
    cfg = TrainConfig(epochs=4, img_size=16, batch_size=8, lr=0.05, ema_decay=1 - 1e-12)
    torch.manual_seed(0)
    after_first_step = _Tiny()
    with pytest.raises(_Interrupt):  # stopped after epoch 0: the raw weights after step 1
        fit(after_first_step, x, y, dev_x, dev_y, dataclasses.replace(cfg, ema_decay=None),
            on_epoch=_stop_after_first_epoch)
    torch.manual_seed(0)
    raw = fit(_Tiny(), x, y, dev_x, dev_y, dataclasses.replace(cfg, ema_decay=None))
    assert len({h["dev_auroc"] for h in raw.history}) > 1
    # a decay this close to 1 holds the average at its first value, the weights after step 1
    torch.manual_seed(0)
    averaged = _Tiny()
    result = fit(averaged, x, y, dev_x, dev_y, cfg)
    assert len({h["dev_auroc"] for h in result.history}) == 1
    assert result.history[0]["dev_auroc"] == raw.history[0]["dev_auroc"]
    for name, value in averaged.state_dict().items():
        torch.testing.assert_close(value, after_first_step.state_dict()[name])


def test_the_model_keeps_the_average_not_the_raw_weights_of_the_best_epoch():
    # two steps per epoch: the raw weights at an epoch's end are never the average's
    x, y = _data(n=16)
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05, ema_decay=0.5)
    model, raw_at_epoch_end = _Tiny(), []
    result = fit(model, x, y, *_unrelated_dev(), cfg,
                 on_epoch=lambda _: raw_at_epoch_end.append(copy.deepcopy(model.state_dict())))
    raw = raw_at_epoch_end[result.best_epoch]
    assert not torch.allclose(model.head.weight, raw["head.weight"])


def test_a_training_state_without_the_average_is_not_resumed_by_an_averaging_run(tmp_path):
    ckpt = tmp_path / "state.pt"
    x, y, cfg = _interrupted_fit(_Tiny, ckpt, "key-a")  # saved by a run without the average
    averaging = dataclasses.replace(cfg, ema_decay=0.9)
    with pytest.warns(UserWarning, match=r"it lacks ema: an older or foreign file"):
        result = fit(_Tiny(), x, y, x, y, averaging, checkpoint_path=ckpt, checkpoint_key="key-a")
    assert result.resumed_from_epoch == 0


def test_a_training_state_saved_under_another_key_is_reported_not_resumed(tmp_path):
    # the recipe changed while its build was interrupted: the old state must not leak into it
    ckpt = tmp_path / "state.pt"
    x, y, cfg = _interrupted_fit(_Tiny, ckpt, "key-a")
    with pytest.warns(UserWarning, match=r"saved for key 'key-a', not 'key-b'.*first epoch"):
        result = fit(_Tiny(), x, y, x, y, cfg, checkpoint_path=ckpt, checkpoint_key="key-b")
    assert result.resumed_from_epoch == 0
    assert [h["epoch"] for h in result.history] == [0, 1, 2]


@pytest.mark.parametrize(
    "content, match",
    [(b"not a torch file", r"ignoring unreadable training state .*state\.pt \(ValueError: not "
                           r"a defectbench training state"),
     (None, r"it lacks .*torch_rng.*older or foreign file")],
)
def test_an_unreadable_training_state_is_reported_and_not_used(tmp_path, content, match):
    ckpt = tmp_path / "state.pt"
    if content is None:  # a state from before the key and RNG were saved
        import hashlib
        import io

        from defectbench.train.fit import _STATE_MAGIC

        buffer = io.BytesIO()
        torch.save({"model": {}, "epoch": 0}, buffer)
        payload = buffer.getvalue()
        ckpt.write_bytes(_STATE_MAGIC + hashlib.sha256(payload).digest() + payload)
    else:
        ckpt.write_bytes(content)
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, lr=0.05)
    with pytest.warns(UserWarning, match=match):
        result = fit(_Tiny(), x, y, x, y, cfg, checkpoint_path=ckpt, checkpoint_key="k")
    assert result.resumed_from_epoch == 0
    assert read_training_state(ckpt)["key"] == "k"  # replaced by a good state


def test_a_damaged_training_state_is_reported_not_resumed(tmp_path):
    # torch.load does not check its bytes: a flipped bit in a weight loaded without a word,
    # was trained on and ended up in the built model
    ckpt = tmp_path / "state.pt"
    x, y, cfg = _interrupted_fit(_Tiny, ckpt, "k")
    data = bytearray(ckpt.read_bytes())
    data[-200] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"do not match the sha256 recorded in it: damaged"):
        result = fit(_Tiny(), x, y, x, y, cfg, checkpoint_path=ckpt, checkpoint_key="k")
    assert result.resumed_from_epoch == 0


class _Wider(_Tiny):
    """_Tiny with 8 channels: what a state saved before pruning would be loaded into."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.head = (torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                         torch.nn.Linear(8, 2))


def test_a_training_state_that_does_not_fit_the_model_is_reported_not_loaded(tmp_path):
    # same key, other shapes (a model pruned to other channels): it used to crash mid-build,
    # after load_state_dict had already copied the tensors that fit
    ckpt = tmp_path / "state.pt"
    x, y, cfg = _interrupted_fit(_Wider, ckpt, "k")
    model = _Tiny()
    with pytest.warns(UserWarning, match=r"does not fit this model \(conv.weight has shape "
                                         r"\(8, 3, 3, 3\), not \(4, 3, 3, 3\)\)"):
        result = fit(model, x, y, x, y, cfg, checkpoint_path=ckpt, checkpoint_key="k")
    assert result.resumed_from_epoch == 0


def test_teacher_logits_for_another_number_of_images_are_refused():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, lr=0.05)
    kd = DistillConfig(teacher="t", mode="soft", temperature=4.0, alpha=0.7)
    with pytest.raises(ConfigError, match=r"teacher_logits has 25 rows for 24 training images"):
        fit(_Tiny(), x, y, x, y, cfg, distill=kd, teacher_logits=np.zeros((25, 2), np.float32))


def test_training_that_never_scores_raises_a_clear_error():
    x, y = _data()
    cfg = TrainConfig(epochs=2, img_size=16, batch_size=8, lr=0.05)
    with pytest.raises(TrainingDivergedError, match=r"no epoch produced a finite dev AUROC.*lower"):
        fit(_NanWhenScored(), x, y, x, y, cfg, description="diverged")

    # a defectbench error, and still the FloatingPointError it was before
    assert issubclass(TrainingDivergedError, DefectbenchError)
    assert issubclass(TrainingDivergedError, FloatingPointError)


def test_distillation_without_teacher_logits_is_refused():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(ConfigError, match=r"teacher's logits .*teacher_logits="):
        fit(_Tiny(), x, y, x, y, cfg, distill=DistillConfig(teacher="t"))


def test_teacher_logits_without_distillation_are_refused_not_ignored():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(ConfigError, match=r"teacher_logits= was given without distill="):
        fit(_Tiny(), x, y, x, y, cfg, teacher_logits=np.zeros((len(x), 2), np.float32))


@pytest.mark.parametrize("kwargs", [{"temperature": 20.0}, {"alpha": 0.05}])
def test_hard_distillation_refuses_settings_it_would_ignore(kwargs):
    with pytest.raises(ConfigError, match=r"hard-label distillation .* uses no temperature"):
        DistillConfig(teacher="t", mode="hard", **kwargs)
    DistillConfig(teacher="t", mode="soft", **kwargs)  # soft KD uses both


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5])
def test_label_smoothing_outside_its_range_is_refused_at_config_time(smoothing):
    with pytest.raises(ConfigError, match=rf"label_smoothing {smoothing} outside \[0, 1\)"):
        TrainConfig(epochs=1, img_size=16, label_smoothing=smoothing)


def test_label_smoothing_is_refused_when_distilling_instead_of_ignored():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, label_smoothing=0.1)
    logits = np.zeros((len(x), 2), np.float32)
    with pytest.raises(ConfigError, match=r"label_smoothing=0.1 does nothing when distilling"):
        fit(_Tiny(), x, y, x, y, cfg, distill=DistillConfig(teacher="t"), teacher_logits=logits)
    # and a recipe says so when the profile is made, before any parent is built
    import dataclasses

    from defectbench.zoo.registry import all_recipes

    recipes = all_recipes("smoke")
    for name in ("tf_efficientnet_lite0.kd", "tf_efficientnet_lite0.kd.pruned30",
                 "tf_efficientnet_lite0.kd.qat_pt2e"):
        recipe = recipes[name]
        field = "train" if hasattr(recipe, "train") else "finetune"
        smoothed = dataclasses.replace(getattr(recipe, field), label_smoothing=0.1)
        with pytest.raises(ConfigError, match="does nothing when distilling"):
            dataclasses.replace(recipe, **{field: smoothed})


def test_soft_distillation_is_kl_from_the_teacher_to_the_student():
    # the docstring's direction, checked against scipy: sum p_t log(p_t / p_s) at T, times T^2
    from scipy.special import rel_entr, softmax

    from defectbench.train.fit import distillation_loss

    student = torch.tensor([[2.0, -1.0], [0.3, 0.9]])
    teacher = torch.tensor([[0.5, 0.1], [-1.0, 2.5]])
    config = DistillConfig(teacher="t", temperature=2.0, alpha=1.0)
    loss = distillation_loss(student, torch.tensor([0, 1]), teacher, config, None)
    p_s, p_t = softmax(student.numpy() / 2, axis=1), softmax(teacher.numpy() / 2, axis=1)
    expected = 4 * rel_entr(p_t, p_s).sum(axis=1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(4 * rel_entr(p_s, p_t).sum(axis=1).mean(), rel=1e-3)


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("targets", ["labels", "annotator_probability"])
def test_fit_learns_the_annotated_probability_when_asked(targets):
    # two kinds of cell the annotators marked 1/3 and 2/3: trained on those probabilities a
    # model should output about 1/3 and 2/3; trained on the binary labels, near 0 and 1.
    # One long epoch, since fit keeps the best dev-AUROC epoch and AUROC is perfect at once
    n = 2048
    group = np.arange(n) % 2
    x = (np.zeros((n, 3, 4, 4)) + group[:, None, None, None]).astype(np.float32)
    probability = np.where(group == 1, 2 / 3, 1 / 3)
    y = (probability >= 0.5).astype(np.int64)
    off = AugmentConfig(flips=False, rot90=False, max_rotation_deg=0, contrast=0, brightness=0)
    cfg = TrainConfig(epochs=1, img_size=4, batch_size=16, lr=0.2, weight_decay=0.0,
                      class_balance="none", targets=targets, augment=off)
    torch.manual_seed(0)
    model = _Linear()
    fit(model, x, y, x, y, cfg,
        train_probability=probability if targets == "annotator_probability" else None)
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(x)), 1)[:, 1].numpy()
    low, high = p[group == 0].mean(), p[group == 1].mean()
    if targets == "labels":
        assert low < 0.1 and high > 0.9
    else:
        assert low == pytest.approx(1 / 3, abs=0.03)
        assert high == pytest.approx(2 / 3, abs=0.03)


@pytest.mark.parametrize(
    "probability, match",
    [(None, "needs the annotated defect probability"),
     (np.full(24, 1.5), r"one probability in \[0, 1\] per training image"),
     (np.full(23, 0.5), r"\(shape \(24,\)\); got shape \(23,\)")],
)
def test_annotated_targets_without_valid_probabilities_are_refused(probability, match):
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, targets="annotator_probability")
    with pytest.raises(ConfigError, match=match):
        fit(_Tiny(), x, y, x, y, cfg, train_probability=probability)


def _qat_prepared_tiny():
    """A fake-quantized graph as `build_qat` makes it: same parent weights every call."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    from defectbench.compress.pt2e import Pt2eInt8Config, prepare_qat_pt2e_int8

    torch.manual_seed(7)
    parent = _Tiny().eval()
    prepared = prepare_qat_pt2e_int8(parent, _data(n=2)[0], Pt2eInt8Config())
    allow_exported_model_train_eval(prepared)
    return prepared


def test_an_interrupted_qat_fit_resumes_to_the_same_weights_and_observer_state(tmp_path):
    # a QAT state holds more than weights: fake-quant scales, observer min/max and the
    # graph's batch-norm statistics; all of them must come back for the resumed run to
    # converge to the uninterrupted one
    x, y = _data()
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05)
    ckpt = tmp_path / "state.pt"
    torch.manual_seed(0)
    with pytest.raises(_Interrupt):
        fit(_qat_prepared_tiny(), x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt,
            checkpoint_key="qat", on_epoch=_stop_in_second_epoch)
    torch.manual_seed(0)
    straight = _qat_prepared_tiny()
    uninterrupted = fit(straight, x, y, *_unrelated_dev(), cfg)
    torch.manual_seed(123)
    resumed = _qat_prepared_tiny()
    result = fit(resumed, x, y, *_unrelated_dev(), cfg, checkpoint_path=ckpt,
                 checkpoint_key="qat")
    assert result.resumed_from_epoch == 1
    for field in ("train_loss", "dev_auroc"):
        assert [h[field] for h in result.history] == pytest.approx(
            [h[field] for h in uninterrupted.history], rel=1e-6
        )
    expected = straight.state_dict()
    got = resumed.state_dict()
    assert got.keys() == expected.keys()
    assert any(k.endswith("activation_post_process.min_val") for k in got)  # observers saved
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, msg=name)


class _NanAfterSteps(_Tiny):
    """Its training loss turns nan after `finite_steps` steps, as a diverging run's does."""

    def __init__(self, finite_steps):
        super().__init__()
        self.finite_steps, self.steps = finite_steps, 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.steps += 1
            if self.steps > self.finite_steps:
                out = out * float("nan")
        return out


def test_a_nan_training_loss_stops_training_before_the_step_instead_of_falling_back():
    # it trained on with nan weights for the remaining epochs and then returned epoch 1's
    # weights, as if the recipe had simply peaked early
    x, y = _data()
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05)
    model = _NanAfterSteps(finite_steps=4)  # 3 batches per epoch: nan at epoch 2, batch 2
    scored = []
    with pytest.raises(TrainingDivergedError,
                       match=r"diverged: the training loss is nan at epoch 2, batch 2 of 3 "
                             r"\(learning rate .*, recipe lr 0.05\); training diverged: lower"):
        fit(model, x, y, x, y, cfg, description="diverged", on_epoch=scored.append)
    assert len(scored) == 1
    # refused before the optimiser step: the weights are still finite
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(TrainingDivergedError, match="loss is nan at epoch 1, batch 1 of 3"):
        fit(_Diverged(), x, y, x, y, cfg, description="diverged")


class _Outputs(_Tiny):
    def __init__(self, classes):
        super().__init__()
        self.head = torch.nn.Linear(4, classes)


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("class_balance", ["weighted_loss", "none"])
def test_a_model_without_two_logits_is_refused_by_name(classes, class_balance):
    # one logit crashed in cross_entropy on the class-weight length; three logits trained
    # silently without class weights and were scored on column 1 of a 3-way softmax
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, class_balance=class_balance)
    with pytest.raises(ConfigError, match=rf"logits of shape \(8, {classes}\) for a batch of 8 "
                                          r"images; .*num_classes=2"):
        fit(_Outputs(classes), x, y, x, y, cfg, description="head")


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize(
    "logits, match",
    [(np.zeros((24, 1), np.float32), r"shape \(24, 1\), not \(24, 2\)"),
     (np.zeros(24, np.float32), r"shape \(24,\), not \(24, 2\)"),
     (np.zeros((24, 3), np.float32), r"shape \(24, 3\), not \(24, 2\)"),
     (np.array([[0.0, np.nan]] + [[0.0, 1.0]] * 23, np.float32), "1 non-finite values")],
    ids=["one-logit", "flat", "three-logits", "nan"],
)
def test_teacher_logits_that_are_not_two_finite_columns_are_refused(mode, logits, match):
    # (n, 1) trained without an error: broadcast in the KL (soft) or argmax always 0 (hard);
    # a nan was reported after training as "lower the learning rate"
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(ConfigError, match=match):
        fit(_Tiny(), x, y, x, y, cfg, distill=DistillConfig(teacher="t", mode=mode),
            teacher_logits=logits)


def test_teacher_logits_as_a_tensor_train_like_the_array():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, lr=0.05)
    logits = np.random.default_rng(0).standard_normal((24, 2)).astype(np.float32)
    runs = []
    for teacher in (logits, torch.from_numpy(logits)):
        torch.manual_seed(0)
        model = _Tiny()
        fit(model, x, y, x, y, cfg, distill=DistillConfig(teacher="t"), teacher_logits=teacher)
        runs.append(model.state_dict())
    for a, b in zip(runs[0].values(), runs[1].values(), strict=True):
        assert torch.equal(a, b)


def test_distilled_and_plain_runs_share_data_order_augmentation_and_dropout():
    # the control: KD and no-KD differ only by the loss. With a vanishing alpha the KD
    # loss is the plain cross-entropy, so any RNG the distillation path consumed (data order,
    # augmentation draws, dropout masks) would show up as other weights
    x, y = _data()
    cfg = TrainConfig(epochs=2, img_size=16, batch_size=8, lr=0.05)
    torch.manual_seed(0)
    plain = _TinyWithDropout()
    distilled = copy.deepcopy(plain)
    fit(plain, x, y, x, y, cfg)
    torch.rand(7)  # whatever ran in between (the teacher's logits) must not matter
    teacher = np.random.default_rng(3).standard_normal((24, 2)).astype(np.float32)
    fit(distilled, x, y, x, y, cfg, distill=DistillConfig(teacher="t", alpha=1e-9),
        teacher_logits=teacher)
    for a, b in zip(plain.state_dict().values(), distilled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_each_image_is_distilled_towards_its_own_teacher_row():
    # alpha=1: only the teacher's rows teach, and the labels fit is given are the opposite of
    # the truth; a student that learns the truth was paired with the right rows as the data
    # order was shuffled
    x, y = _data()
    off = AugmentConfig(flips=False, rot90=False, max_rotation_deg=0, contrast=0, brightness=0)
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05, augment=off,
                      class_balance="none")
    teacher = np.stack([-4.0 * (2 * y - 1), 4.0 * (2 * y - 1)], axis=1).astype(np.float32)
    torch.manual_seed(0)
    result = fit(_Tiny(), x, 1 - y, x, y, cfg,
                 distill=DistillConfig(teacher="t", alpha=1.0), teacher_logits=teacher)
    assert result.best_dev_auroc > 0.9


@pytest.mark.parametrize(
    "labels, match",
    [(np.arange(24) % 3, r"train_y must be integer class labels 0 \(good\) or 1 .* \[0, 1, 2\]"),
     (np.where(np.arange(24) % 2, -1, 0), r"values \[-1, 0\]"),
     ((np.arange(24) % 2).astype(np.float32), "got dtype float32"),
     (np.arange(10) % 2, r"train_y has shape \(10,\) for 24 images"),
     (np.zeros(24, np.int64), "the training set holds 0 defective and 24 good images; it needs"),
     (np.array([0, 1, None] * 8, dtype=object), r"got dtype object with values \[0, 1, None\]")],
    ids=["label-2", "label-minus-1", "float", "short", "one-class", "none"],
)
def test_bad_training_labels_are_refused_before_training(labels, match):
    x, _ = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    epochs = []
    with pytest.raises(DefectbenchError, match=match):
        fit(_Tiny(), x, labels, x, np.arange(24) % 2, cfg, on_epoch=epochs.append)
    assert epochs == []


@pytest.mark.parametrize(
    "dev_labels, match",
    [(np.zeros(24, np.int64), "the dev set holds 0 defective and 24 good images"),
     (np.arange(5) % 2, r"dev_y has shape \(5,\) for 24 images")],
)
def test_a_dev_set_that_cannot_be_scored_is_refused_before_the_first_epoch(dev_labels, match):
    # it was found by roc_auc after an epoch had been trained (minutes on the full profile)
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    epochs = []
    with pytest.raises(DefectbenchError, match=match):
        fit(_Tiny(), x, y, x, dev_labels, cfg, on_epoch=epochs.append)
    assert epochs == []


def test_a_single_training_image_is_refused_not_trained_on_zero_batches():
    # a batch of one is dropped for batch norm: one image trained nothing and reported loss 0
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(DataError, match="training set holds 1 defective and 0 good"):
        fit(_Tiny(), x[1:2], y[1:2], x, y, cfg)


def test_training_images_that_are_not_preprocessed_float32_are_refused():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(ConfigError, match=r"float32 \(N, 3, H, W\) array .* got float64"):
        fit(_Tiny(), x.astype(np.float64), y, x, y, cfg)


def test_a_checkpoint_path_without_a_key_is_refused(tmp_path):
    # both runs would save and match under None: the second recipe resumed the first's state
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(ConfigError, match="checkpoint_path= needs checkpoint_key="):
        fit(_Tiny(), x, y, x, y, cfg, checkpoint_path=tmp_path / "state.pt")
    assert not (tmp_path / "state.pt").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"weight_decay": -0.1}, "weight_decay must be finite and >= 0, got -0.1"),
     ({"weight_decay": float("nan")}, "weight_decay must be finite and >= 0, got nan"),
     ({"epochs": 2.5}, "epochs must be >= 1 and a whole number, got 2.5"),
     ({"epochs": True}, "epochs must be >= 1 and a whole number, got True"),
     ({"batch_size": 4.5}, r"batch_size must be >= 2 \(batch norm\) and a whole number, got 4.5"),
     ({"img_size": 0}, "img_size must be >= 1 and a whole number, got 0"),
     ({"seed": -1}, "seed must be >= 0 and a whole number, got -1"),
     ({"max_train_images": 0}, r"max_train_images must be >= 1 or None \(the whole split\)"),
     ({"max_dev_images": 3.0}, "max_dev_images must be >= 1 or None"),
     ({"augment": None}, "augment must be an AugmentConfig"),
     ({"augment": {"flips": "false"}}, "augment flips must be true or false, got 'false'")],
)
def test_train_config_refuses_values_that_failed_late_or_silently(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{"epochs": 1, "img_size": 16, **kwargs})


def test_soft_distillation_with_alpha_0_is_refused_as_the_undistilled_model():
    with pytest.raises(ConfigError, match="alpha=0 gives the teacher no weight"):
        DistillConfig(teacher="t", alpha=0.0)
    DistillConfig(teacher="t", alpha=1e-3)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf")])
def test_distillation_temperature_must_be_finite(temperature):
    # nan passed `<= 0`; inf made every soft target uniform and the loss inf * 0 = nan
    with pytest.raises(ConfigError, match="temperature must be > 0 and finite"):
        DistillConfig(teacher="t", temperature=temperature)


# The data pipeline that feeds training: defectbench.data.preprocess


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0, 3)])
def test_an_image_without_pixels_is_named_not_a_torch_interpolate_error(shape):
    from defectbench.data.preprocess import Preprocess

    images = [np.zeros((8, 8), np.uint8), np.zeros(shape, np.uint8)]
    with pytest.raises(DataError, match=rf"image 1: image of shape \({shape[0]}, .*no pixels"):
        Preprocess(16)(images)


def test_a_single_image_given_as_the_batch_gets_a_hint():
    # iterating one (H, W) image yields its rows: "got shape (48,)" alone did not say why
    from defectbench.data.preprocess import Preprocess

    with pytest.raises(DataError, match=r"image 0: .*got shape \(48,\); a single image was "
                                        r"given where a sequence of images is expected"):
        Preprocess(16)(np.zeros((48, 48), np.uint8))
    with pytest.raises(DataError, match=r"image 2: expected uint8 pixels, got uint16"):
        Preprocess(16)([np.zeros((8, 8), np.uint8)] * 2 + [np.zeros((8, 8), np.uint16)])


def test_a_bad_image_of_a_large_set_is_named_by_its_id_not_its_place_in_a_chunk():
    # preprocess_set works in chunks of 64: "image 6" pointed at the 7th of the second chunk
    from defectbench.data.image_set import in_memory
    from defectbench.data.preprocess import Preprocess, preprocess_set

    images = [np.zeros((8, 8), np.uint8)] * 100
    images[70] = np.zeros((8, 8), np.float32)
    ids = [f"cell{i:03d}" for i in range(100)]
    image_set = in_memory(ids, np.zeros(100, np.int8), images)
    with pytest.raises(DataError, match=r"image 'cell070': expected uint8 pixels"):
        preprocess_set(image_set, Preprocess(16))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"size": 32.5}, "input size 32.5 must be a whole number of pixels"),
     ({"size": "32"}, "input size '32' must be a whole number of pixels"),
     ({"size": 32, "std": (float("nan"),) * 3}, r"mean/std must be finite"),
     ({"size": 32, "mean": (0.5, float("inf"), 0.5)}, r"mean/std must be finite"),
     ({"size": 32, "mean": 0.5}, r"mean/std must be 3 numbers each \(one per channel\), got 0.5"),
     ({"size": 32, "std": "abc"}, r"mean/std must be 3 numbers each")],
)
def test_preprocess_refuses_sizes_and_statistics_that_failed_later(kwargs, match):
    # 32.5 failed in np.empty at the first batch, a str with a TypeError; a nan std made
    # every input nan without an error
    from defectbench.data.preprocess import Preprocess

    with pytest.raises(ConfigError, match=match):
        Preprocess(**kwargs)
    assert Preprocess(np.int64(32)).size == 32  # a numpy integer is a whole number


def test_annotated_probabilities_given_to_a_labels_recipe_are_refused_not_ignored():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8)
    with pytest.raises(ConfigError, match="train_probability= was given, but the recipe trains "
                                          "on targets='labels'"):
        fit(_Tiny(), x, y, x, y, cfg, train_probability=np.full(24, 0.5))


def test_the_distillation_loss_refuses_teacher_logits_that_do_not_pair():
    student = torch.zeros(4, 2)
    for teacher in (torch.zeros(4, 1), torch.zeros(2, 2)):
        with pytest.raises(ConfigError, match=r"teacher logits of shape \(\d, \d\) do not pair"):
            distillation_loss(student, torch.zeros(4, dtype=torch.long), teacher,
                              DistillConfig(teacher="t"), None)


def test_tied_dev_scores_keep_the_earliest_epoch():
    # dev = train and separable: AUROC is 1.0 from the first epoch on
    x, y = _data()
    scored = []
    model = _Tiny()
    result = fit(model, x, y, x, y, TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05),
                 on_epoch=lambda record: scored.append(copy.deepcopy(model.state_dict())))
    assert [h["dev_auroc"] for h in result.history] == [1.0, 1.0, 1.0]
    assert result.best_epoch == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, scored[0][key]), key


@pytest.mark.parametrize(
    "kwargs, ignored",
    [({}, "class_balance='weighted_loss'"),
     ({"class_balance": "none", "targets": "annotator_probability"},
      "targets='annotator_probability'")],
)
def test_soft_distillation_with_alpha_1_refuses_settings_only_the_cross_entropy_uses(
    kwargs, ignored
):
    # alpha=1 drops the cross-entropy term: class weights and annotated targets keyed a
    # variant whose weights they could not change
    from defectbench.train.config import check_distillable

    cfg = TrainConfig(epochs=1, img_size=16, **kwargs)
    with pytest.raises(ConfigError, match=rf"alpha=1 leaves no cross-entropy term, so {ignored}"):
        check_distillable(cfg, DistillConfig(teacher="t", alpha=1.0))
    check_distillable(cfg, DistillConfig(teacher="t", alpha=0.9))
    check_distillable(TrainConfig(epochs=1, img_size=16, class_balance="none"),
                      DistillConfig(teacher="t", alpha=1.0))


def test_preprocess_for_a_model_without_its_normalisation_is_refused_not_imagenet():
    # a model without pretrained_cfg was fed ImageNet-normalised inputs without a word
    import timm

    from defectbench.data.preprocess import Preprocess

    with pytest.raises(ConfigError, match=r"_Tiny has no pretrained_cfg with mean and std"):
        Preprocess.for_model(_Tiny(), 32)
    gray = timm.create_model("test_resnet.r160_in1k", pretrained=False, num_classes=2)
    gray.pretrained_cfg = {**gray.pretrained_cfg, "mean": (0.5,), "std": (0.5,)}
    with pytest.raises(ConfigError, match=r"normalises 1 input channel\(s\); .*in_chans=3"):
        Preprocess.for_model(gray, 32)
    lite = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    assert Preprocess.for_model(lite, 32) == Preprocess(32, (0.5,) * 3, (0.5,) * 3)


def test_labels_given_as_lists_train_like_arrays():
    # a list passed the class weights and failed on `.astype` when the targets were made
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, lr=0.05)
    runs = []
    for labels in (y, y.tolist()):
        torch.manual_seed(0)
        model = _Tiny()
        fit(model, x, labels, x, labels, cfg)
        runs.append(model.state_dict())
    for a, b in zip(runs[0].values(), runs[1].values(), strict=True):
        assert torch.equal(a, b)


def test_augmentation_never_mixes_images_of_a_batch():
    # each image stays itself (its label's image): constant images stay constant at their own
    # value through flips, transposes and rotations, and brightness moves each by its own draw
    values = torch.linspace(-0.9, 0.9, 8)
    x = values.view(8, 1, 1, 1).expand(8, 3, 16, 16).contiguous()
    geometric = AugmentConfig(max_rotation_deg=30, contrast=0, brightness=0)
    out = augment_batch(x, geometric, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x)
    bright = augment_batch(x, AugmentConfig(contrast=0, brightness=0.05),
                           torch.Generator().manual_seed(0))
    shift = bright - x
    assert (shift.abs() <= 0.1 + 1e-6).all()  # 0.05 of the pixel range: 0.1 after std 0.5
    # one draw per image, applied to all of it (up to the rotation's rounding)
    torch.testing.assert_close(shift, shift[:, :1, :1, :1].expand_as(shift))
    assert len(set(shift[:, 0, 0, 0].tolist())) == 8


def test_class_weights_weigh_both_cross_entropy_terms_of_distillation_not_the_kl():
    # the docstring: class weights enter the cross-entropy terms (the labels' and, for hard KD,
    # the teacher decision's) and never the KL term
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 2), torch.randn(8, 2)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    weight = torch.tensor([0.6, 2.5])
    hard = distillation_loss(student, labels, teacher, DistillConfig(teacher="t", mode="hard"),
                             weight)
    expected = 0.5 * F.cross_entropy(student, labels, weight=weight) + 0.5 * F.cross_entropy(
        student, teacher.argmax(1), weight=weight)
    assert hard.item() == pytest.approx(expected.item(), rel=1e-6)
    soft = distillation_loss(student, labels, teacher, DistillConfig(teacher="t", alpha=0.6),
                             weight)
    kl = F.kl_div(F.log_softmax(student / 4, 1), F.log_softmax(teacher / 4, 1),
                  reduction="batchmean", log_target=True)
    expected = 0.6 * 16 * kl + 0.4 * F.cross_entropy(student, labels, weight=weight)
    assert soft.item() == pytest.approx(expected.item(), rel=1e-6)


_NO_AUGMENT = AugmentConfig(flips=False, rot90=False, max_rotation_deg=0, contrast=0,
                            brightness=0)


@pytest.mark.parametrize("kwargs", [{"label_smoothing": 0.1},
                                    {"targets": "annotator_probability"},
                                    {"class_balance": "none"}])
def test_the_first_recorded_loss_is_the_recipes_loss_at_the_starting_weights(kwargs):
    # one step per epoch and no augmentation: epoch 0's train_loss is the loss of the
    # untrained model on the whole set, with the recipe's class weights (imbalanced data:
    # 9 good, 3 defective), smoothing and targets
    from sklearn.utils.class_weight import compute_class_weight

    rng = np.random.default_rng(0)
    y = np.array([0] * 9 + [1] * 3)
    x = rng.standard_normal((12, 3, 16, 16)).astype(np.float32)
    probability = np.where(y == 1, 2 / 3, 1 / 3)
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=12, augment=_NO_AUGMENT, **kwargs)
    torch.manual_seed(0)
    model = _Tiny()
    with torch.no_grad():
        logits = model.train()(torch.from_numpy(x))
    weight = None
    if cfg.class_balance == "weighted_loss":
        weight = torch.tensor(compute_class_weight("balanced", classes=np.array([0, 1]), y=y),
                              dtype=torch.float32)
    target = torch.from_numpy(y)
    if cfg.targets == "annotator_probability":
        target = torch.from_numpy(np.stack([1 - probability, probability], 1).astype(np.float32))
    expected = F.cross_entropy(logits, target, weight=weight,
                               label_smoothing=cfg.label_smoothing)
    result = fit(model, x, y, x, y, cfg,
                 train_probability=probability if cfg.targets != "labels" else None)
    assert result.history[0]["train_loss"] == pytest.approx(expected.item(), rel=1e-5)


class _RecordsInputs(_Tiny):
    """Records the first pixel of each training image it is given, one list per batch."""

    def __init__(self):
        super().__init__()
        self.batches: list[list[float]] = []

    def forward(self, x):
        if self.training:
            self.batches.append(x[:, 0, 0, 0].tolist())
        return super().forward(x)


def _images_numbered(n):
    """Image i is constant at i / 10, so a training input names the image it came from."""
    x = (np.arange(n, dtype=np.float32) / 10).reshape(n, 1, 1, 1) + np.zeros((n, 3, 8, 8))
    return x.astype(np.float32), (np.arange(n) % 2).astype(np.int64)


@pytest.mark.parametrize("n, seen", [(18, 18), (17, 16)])
def test_each_epoch_trains_on_every_image_once_in_a_new_order(n, seen):
    # batches of 8: 18 images make 8 + 8 + 2 (the last, short batch is trained on); 17 make
    # 8 + 8 + 1, and the batch of one is dropped for batch norm
    x, y = _images_numbered(n)
    cfg = TrainConfig(epochs=2, img_size=8, batch_size=8, augment=_NO_AUGMENT)
    model = _RecordsInputs()
    fit(model, x, y, x, y, cfg)
    per_epoch = len(model.batches) // 2
    epochs = [sum(model.batches[:per_epoch], []), sum(model.batches[per_epoch:], [])]
    assert [len(b) for b in model.batches] == ([8, 8, 2] if n == 18 else [8, 8]) * 2
    for order in epochs:
        assert len(order) == seen
        assert len(set(order)) == seen  # no image twice
        assert set(order) <= {float(v) for v in x[:, 0, 0, 0]}  # un-augmented images
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    assert epochs[0] != sorted(epochs[0])  # and shuffled at all


def test_fit_augments_the_training_images_with_the_recipes_augmentation():
    x, y = _images_numbered(16)
    originals = {float(v) for v in x[:, 0, 0, 0]}
    plain, augmented = _RecordsInputs(), _RecordsInputs()
    fit(plain, x, y, x, y, TrainConfig(epochs=1, img_size=8, batch_size=8, augment=_NO_AUGMENT))
    fit(augmented, x, y, x, y, TrainConfig(epochs=1, img_size=8, batch_size=8,
                                           augment=AugmentConfig(brightness=0.2)))
    assert set(sum(plain.batches, [])) == originals
    assert not set(sum(augmented.batches, [])) & originals


def test_the_seed_sets_the_data_order_and_augmentation():
    x, y = _images_numbered(16)
    orders = []
    for seed in (0, 0, 1):
        model = _RecordsInputs()
        fit(model, x, y, x, y, TrainConfig(epochs=1, img_size=8, batch_size=8, seed=seed))
        orders.append(model.batches)
    assert orders[0] == orders[1] and orders[0] != orders[2]


def test_the_learning_rate_follows_one_cycle_over_exactly_the_recipes_steps(monkeypatch):
    # OneCycleLR over epochs * batches steps: from lr / 25 up to lr at 15% of the steps, then
    # annealed to lr / 25 / 1e4 at the last step (a longer schedule stops before it anneals)
    x, y = _data()
    cfg = TrainConfig(epochs=4, img_size=16, batch_size=8, lr=0.05)  # 3 batches per epoch
    lrs = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    result = fit(_Tiny(), x, y, x, y, cfg)
    assert len(lrs) == 12
    # each epoch's history records the rate its last step used, not the next step's
    assert [h["lr"] for h in result.history] == [lrs[2], lrs[5], lrs[8], lrs[11]]
    assert lrs[0] == pytest.approx(cfg.lr / 25)
    # the peak at step 0.15 * 12 - 1 = 0.8 falls between the first two steps
    assert max(lrs) == pytest.approx(cfg.lr, rel=1e-2) and int(np.argmax(lrs)) == 1
    assert lrs[-1] == pytest.approx(cfg.lr / 25 / 1e4)


def test_the_kept_weights_are_the_average_at_the_recipes_decay():
    # one step per epoch: the average after epoch k is the decay-weighted average of the raw
    # weights each epoch ended with, the first step copying them
    x, y = _data(n=8)
    cfg = TrainConfig(epochs=4, img_size=16, batch_size=8, lr=0.05, ema_decay=0.5)
    torch.manual_seed(0)
    model, raw = _Tiny(), []
    result = fit(model, x, y, *_unrelated_dev(), cfg,
                 on_epoch=lambda _: raw.append(model.head.weight.detach().clone()))
    assert result.best_epoch > 0  # an average of several steps, not the first copy
    average = raw[0]
    for weights in raw[1:result.best_epoch + 1]:
        average = 0.5 * average + 0.5 * weights
    torch.testing.assert_close(model.head.weight, average)
    assert not model.training  # left in eval mode, as the raw-weight run leaves it


@pytest.mark.parametrize(
    "kwargs, match",
    [({"augment": {"max_rotation_deg": 45.0}}, "max_rotation_deg 45.0 outside 0..30"),
     ({"augment": {"contrast": 1.0}}, r"contrast and brightness jitter must be in \[0, 1\)"),
     ({"augment": {"brightness": 1.0}}, r"contrast and brightness jitter must be in \[0, 1\)"),
     ({"augment": {"brightness": -0.1}}, r"contrast and brightness jitter must be in \[0, 1\)"),
     ({"lr": 0.0}, r"lr 0.0 outside \(0, 1\)"),
     ({"lr": 1.5}, r"lr 1.5 outside \(0, 1\)"),
     ({"ema_decay": 0.0}, r"ema_decay 0.0 outside \(0, 1\)"),
     ({"augment": {"rot90": 1}}, "augment rot90 must be true or false, got 1")],
)
def test_train_config_refuses_out_of_range_rates_and_augmentation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{"epochs": 1, "img_size": 16, **kwargs})


def test_distillation_alpha_below_0_is_refused():
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got -0.1"):
        DistillConfig(teacher="t", alpha=-0.1)


def test_negative_annotated_probabilities_are_refused():
    x, y = _data()
    cfg = TrainConfig(epochs=1, img_size=16, batch_size=8, targets="annotator_probability")
    with pytest.raises(ConfigError, match=r"one probability in \[0, 1\] .* range \[-0.5, "):
        fit(_Tiny(), x, y, x, y, cfg, train_probability=np.where(y == 1, 1.0, -0.5))


def _views(image):
    """The eight quarter-turn and mirror views of a square (C, H, W) image."""
    views = []
    for base in (image, image.transpose(-1, -2)):
        for flips in ((), (-1,), (-2,), (-1, -2)):
            views.append(base.flip(flips) if flips else base)
    return views


def _which_view(out, image):
    matches = [i for i, v in enumerate(_views(image)) if torch.equal(out, v)]
    assert len(matches) == 1, matches
    return matches[0]


def test_flips_and_rot90_give_all_eight_views_and_flips_alone_four():
    image = torch.arange(3 * 5 * 5, dtype=torch.float32).view(3, 5, 5)  # no symmetry
    x = image.expand(64, 3, 5, 5).contiguous()
    geometric = AugmentConfig(max_rotation_deg=0, contrast=0, brightness=0)
    both = augment_batch(x, geometric, torch.Generator().manual_seed(0))
    assert {_which_view(o, image) for o in both} == set(range(8))
    flips = augment_batch(x, dataclasses.replace(geometric, rot90=False),
                          torch.Generator().manual_seed(0))
    assert {_which_view(o, image) for o in flips} == {0, 1, 2, 3}
    turns = augment_batch(x, dataclasses.replace(geometric, flips=False),
                          torch.Generator().manual_seed(0))
    assert {_which_view(o, image) for o in turns} == {0, 4}
    # a non-square image cannot be transposed into its own shape: it is flipped only
    wide = torch.randn(8, 3, 4, 6)
    assert augment_batch(wide, geometric, torch.Generator().manual_seed(0)).shape == wide.shape


def test_rotations_turn_both_ways_up_to_the_maximum_angle():
    # a horizontal bar through the centre: the slope of its brightest pixel per column is
    # tan(angle), the sign giving the direction
    n, size = 64, 33
    x = torch.zeros(n, 3, size, size)
    x[:, :, size // 2, :] = 1.0
    out = augment_batch(x, AugmentConfig(flips=False, rot90=False, max_rotation_deg=20,
                                         contrast=0, brightness=0),
                        torch.Generator().manual_seed(0))
    rows = torch.arange(size, dtype=torch.float32).view(1, size, 1)
    weight = out[:, 0]
    centre = (weight * rows).sum(1) / weight.sum(1)  # (n, columns): the bar's row per column
    columns = torch.arange(size, dtype=torch.float32)[8:-8]
    slopes = np.polyfit(columns.numpy(), centre[:, 8:-8].T.numpy(), 1)[0]
    angles = np.degrees(np.arctan(slopes))
    assert np.abs(angles).max() <= 21 and np.abs(angles).max() > 15
    assert angles.min() < -10 and angles.max() > 10  # both directions
    # a rotation, not a shear or mirror: a vertical bar turns by the same angle, so the same
    # draws leave it perpendicular to the horizontal one
    upright = augment_batch(x.transpose(-1, -2), AugmentConfig(
        flips=False, rot90=False, max_rotation_deg=20, contrast=0, brightness=0),
        torch.Generator().manual_seed(0)).transpose(-1, -2)[:, 0]
    centre = (upright * rows).sum(1) / upright.sum(1)
    upright_slopes = np.polyfit(columns.numpy(), centre[:, 8:-8].T.numpy(), 1)[0]
    np.testing.assert_allclose(upright_slopes, -slopes, atol=0.02)


def test_contrast_keeps_each_images_mean_and_brightness_spans_its_range():
    rng = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, 8, 8, generator=rng) * torch.linspace(0.5, 2, 64).view(64, 1, 1, 1)
    contrast = augment_batch(x, dataclasses.replace(_NO_AUGMENT, contrast=0.3),
                             torch.Generator().manual_seed(0))
    torch.testing.assert_close(contrast.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5, rtol=0)
    scale = (contrast.std((1, 2, 3)) / x.std((1, 2, 3))).numpy()
    assert scale.min() >= 0.7 - 1e-5 and scale.max() <= 1.3 + 1e-5
    assert scale.min() < 0.8 and scale.max() > 1.2  # lowered and raised
    bright = augment_batch(x, dataclasses.replace(_NO_AUGMENT, brightness=0.1),
                           torch.Generator().manual_seed(0))
    shift = (bright - x)[:, 0, 0, 0].numpy()
    # 0.1 of the pixel range is 0.2 after normalising with std 0.5
    assert np.abs(shift).max() <= 0.2 + 1e-6 and shift.min() < -0.15 and shift.max() > 0.15


def test_each_training_state_replaces_the_last_instead_of_rewriting_it_in_place(tmp_path):
    # a new file renamed over the old one: a build killed while writing epoch k's state
    # leaves epoch k-1's whole, and whoever opened the old file still reads all of it
    ckpt = tmp_path / "state.pt"
    x, y = _data()
    cfg = TrainConfig(epochs=3, img_size=16, batch_size=8, lr=0.05)
    opened = []

    def open_the_first_state(record):
        if record["epoch"] == 1:  # epoch 0's state is on disk, epoch 1's not yet
            opened.append(ckpt.open("rb"))

    fit(_Tiny(), x, y, x, y, cfg, checkpoint_path=ckpt, checkpoint_key="k",
        on_epoch=open_the_first_state)
    with opened[0] as old:
        (tmp_path / "old.pt").write_bytes(old.read())
    assert read_training_state(tmp_path / "old.pt")["epoch"] == 0
    assert read_training_state(ckpt)["epoch"] == 2
