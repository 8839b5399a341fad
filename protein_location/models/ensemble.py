"""EnsembleClassifier: the mean probability of several classifiers, one graph."""

import keras


@keras.saving.register_keras_serializable(package="protein_location")
class EnsembleClassifier(keras.Model):
    """The per-class mean of the probabilities of several `MultiLabelClassifier`s.

    What cross-validation exports: the K fold models of one run, each
    trained without one fold, averaged in one functional graph, so every
    signature of the SavedModel computes all K in one call. The members
    keep their weights; each is renamed `member_<i>` (layer names in a
    graph must be unique, and K models of one run share theirs).

    Args:
        members: a list of at least two `MultiLabelClassifier`s with the
            same input side and number of classes.
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:
        >>> from protein_location import models
        >>> members = [models.build_seresnet("seresnet18", image_size=32, width=0.125) for _ in range(2)]
        >>> models.EnsembleClassifier(members).output_shape
        (None, 28)
    """

    def __init__(self, members, **kwargs):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        shapes = {(tuple(member.input_shape[1:]), member.output_shape[-1]) for member in members}
        if len(shapes) > 1:
            raise ValueError(f"the members differ in input or output shape: {sorted(shapes)}")
        for index, member in enumerate(members):
            member.name = f"member_{index}"

        # === Layers ===
        self.members = members
        self.mean = keras.layers.Average(dtype="float32", name="mean")

        # === Functional model ===
        ((input_shape, num_classes),) = shapes
        inputs = keras.Input(input_shape, name="image")
        outputs = self.mean([member(inputs) for member in members])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # A functional model takes the global policy when it is created: it computes as its members do.
        self.dtype_policy = members[0].dtype_policy

        # === Config ===
        self.image_size = int(input_shape[0])
        self.num_classes = int(num_classes)

    def get_config(self):
        # Not chained to super: a functional model's config is its layer
        # graph, which this constructor does not take (MultiLabelClassifier).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "members": [keras.saving.serialize_keras_object(member) for member in self.members],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(member) for member in config["members"]]
        return cls(**config)
