"""--ema: the moving average of the weights is what val metrics, the best
checkpoint and the backup see, training goes on from the raw weights, and a
run resumed from its backup trains as if it had never stopped."""

import keras
import numpy as np
import pytest

from protein_location.core.errors import TrainError, naming_flags
from protein_location.training import checkpoints, config as config_lib, trainer

EPOCHS = 4
X = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
Y = (X @ np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], "float32")).astype("float32")


class Cut(BaseException):
    """A kill after an epoch's backup is written."""


class CutAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Cut()


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.AdamW(0.05, use_ema=True, ema_momentum=0.8), "mse")
    return model


def _flat(variables):
    return np.concatenate([np.ravel(v) for v in variables])


def _fit(model, callbacks):
    model.fit(X, Y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=callbacks)
    return _flat(model.trainable_weights)


def _killed_and_resumed(tmp_path, swap_callback):
    backup = str(tmp_path / "backup")
    with pytest.raises(Cut):
        _fit(
            _model(),
            [checkpoints.ResumableSwapEMAWeights(), checkpoints.AtomicBackupAndRestore(backup), CutAfterEpoch(1)],
        )
    assert checkpoints.committed_epochs(str(tmp_path)) == 2
    return _fit(_model(), [swap_callback, checkpoints.AtomicBackupAndRestore(backup)])


def test_the_swaps_leave_training_alone_and_the_run_ends_on_the_average():
    plain = _model()
    _fit(plain, [])  # Keras' fit ends by putting the optimizer's average into the model
    swapped = _fit(_model(), [checkpoints.ResumableSwapEMAWeights()])
    np.testing.assert_allclose(swapped, _flat(plain.trainable_weights), atol=1e-6)


def test_val_metrics_are_those_of_the_average():
    seen = {}

    class Evaluated(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen["evaluated"] = _flat(self.model.trainable_weights)
            seen["slots"] = _flat(self.model.optimizer._model_variables_moving_average)

    model = _model()
    model.fit(
        X,
        Y,
        batch_size=8,
        epochs=1,
        shuffle=False,
        verbose=0,
        validation_data=(X, Y),
        callbacks=[checkpoints.ResumableSwapEMAWeights(), Evaluated()],
    )
    # One epoch: the run ends on the average (Keras' fit), the weights val saw; the raw ones were in the slots.
    np.testing.assert_allclose(seen["evaluated"], _flat(model.trainable_weights), atol=1e-6)
    assert not np.allclose(seen["slots"], seen["evaluated"], atol=1e-4)


def test_a_run_resumed_from_its_backup_trains_as_if_it_had_never_stopped(tmp_path):
    uninterrupted = _fit(
        _model(), [checkpoints.ResumableSwapEMAWeights(), checkpoints.AtomicBackupAndRestore(str(tmp_path / "whole"))]
    )
    resumed = _killed_and_resumed(tmp_path / "killed", checkpoints.ResumableSwapEMAWeights(averaged_in_backup=True))
    np.testing.assert_allclose(resumed, uninterrupted, atol=1e-6)


def test_keras_own_swap_callback_would_train_on_from_the_average_after_a_resume(tmp_path):
    # Why the subclass exists: the backup holds the average in the model, and Keras' callback does not know it.
    uninterrupted = _fit(_model(), [checkpoints.ResumableSwapEMAWeights()])
    resumed = _killed_and_resumed(tmp_path, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    assert not np.allclose(resumed, uninterrupted, atol=1e-4)


def test_ema_flag_alone_is_0_99_and_a_momentum_outside_0_1_is_refused_in_one_line():
    parser = config_lib.add_flags(__import__("argparse").ArgumentParser())
    args = parser.parse_args(["--data", "d", "--model-dir", "m", "--ema"])
    assert config_lib.config_from_args(args).ema_momentum == 0.99
    args = parser.parse_args(["--data", "d", "--model-dir", "m"])
    assert config_lib.config_from_args(args).ema_momentum is None
    args = parser.parse_args(["--data", "d", "--model-dir", "m", "--ema", "1"])
    with pytest.raises(TrainError) as error:
        config_lib.resolve(config_lib.config_from_args(args), "default", 32)
    assert naming_flags(error.value, config_lib.flag_names()) == (  # as train_keras.py prints it
        "--ema 1 must be between 0 and 1 (a momentum per step, 0.99 a window of about 100 steps)"
    )


@pytest.mark.parametrize(
    ("first", "end", "start_epoch", "averaged"),
    [
        (0, 20, 0, False),  # a fresh run
        (0, 20, 7, True),  # resumed after epoch 7: its backup holds the average
        (1, 20, 1, False),  # the first fit of the phase after a head-only warm-up: the new optimizer has no average yet
        (0, 1, 1, False),  # a resumed run past the warm-up never fits it again (trainer.fit_model)
        (0, 20, 20, False),  # resumed after the last epoch: nothing to train, the slots hold the average too
    ],
)
def test_a_fit_knows_whether_its_restored_model_holds_the_average(first, end, start_epoch, averaged):
    config = config_lib.TrainConfig(data="d", model_dir="m", ema_momentum=0.99)
    run_callbacks = [keras.callbacks.TerminateOnNaN()]
    swap, *rest = trainer.phase_callbacks(config, run_callbacks, first, end, start_epoch)
    assert isinstance(swap, checkpoints.ResumableSwapEMAWeights) and swap.averaged_in_backup is averaged
    assert rest == run_callbacks
    plain = config_lib.TrainConfig(data="d", model_dir="m")
    assert trainer.phase_callbacks(plain, run_callbacks, first, end, start_epoch) is run_callbacks
