"""ScaledRateAdamW: AdamW with a lower rate for a pretrained backbone."""

import keras


@keras.saving.register_keras_serializable(package="protein_location")
class ScaledRateAdamW(keras.optimizers.AdamW):
    """AdamW whose `scaled_variables` learn at `rate_scale` times the rate of
    the others.

    Fine-tuning a pretrained backbone at the rate a fresh head needs wrecks
    its features; Keras optimizers take one rate for all variables, and
    scaling the gradients instead would do nothing under Adam (its steps do
    not depend on the gradients' scale). The decoupled weight decay keeps
    the one rate: it is `rate x weight_decay`, a 1e-7-sized pull per step.

    Args:
        scaled_variables: the variables to scale, e.g. a backbone's
            `trainable_variables` (Keras gives a nested model's variables no
            path prefix of its own, so they are named by identity).
        rate_scale: float. Their rate's factor.
        *args, **kwargs: `keras.optimizers.AdamW` arguments.

    Example:
        >>> optimizer = ScaledRateAdamW(1e-3, scaled_variables=model.backbone.trainable_variables, rate_scale=0.1)
    """

    def __init__(self, *args, scaled_variables=(), rate_scale=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._scaled_ids = {id(variable) for variable in scaled_variables}
        self.rate_scale = float(rate_scale)
        self._rate_scales = None

    def build(self, var_list):
        super().build(var_list)
        self._rate_scales = [self._scale_of(variable) for variable in self._trainable_variables]

    def _scale_of(self, variable):
        return self.rate_scale if id(variable) in self._scaled_ids else 1.0

    def update_step(self, gradient, variable, learning_rate):
        scale = self._rate_scales[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["rate_scale"] = self.rate_scale  # the variables are not config: they belong to a model
        return config
