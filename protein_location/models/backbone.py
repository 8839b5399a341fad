"""Backbone: the base class of our backbones, and the presets every `--arch`
names, keras-hub style (`Backbone`, `register_presets`, `from_preset`)."""

import keras

# {preset name: (its Backbone subclass, that class's arguments)}: every
# `--arch`. Filled by `register_presets` as each family's module is imported
# (presets.py, application_backbone.py), so its order is the imports'; errors
# list the names sorted.
BACKBONE_PRESETS = {}


class Backbone(keras.Model):
    """A functional `keras.Model` that maps normalized four-stain images to a
    feature map, built from its constructor's arguments alone.

    Subclasses build their graph in `__init__` and hand it to this one with
    their dtype policy, and list those arguments in `argument_config`; this
    class gives them the config that rebuilds them (`get_config`,
    `from_config`: not the functional default, whose config is the layer
    graph, which their constructors do not take) and `from_preset`.

    Class attributes say which of `build_classifier`'s options a family takes:
    `takes_width` (a multiplier on the filters) and `takes_pretrained_weights`
    (three-channel weights copied in, `pretrained.load_three_channel_weights`).
    """

    takes_width = False
    takes_pretrained_weights = False

    def __init__(self, inputs, outputs, dtype_policy, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # A functional model does not take its policy from `dtype`: set it.
        self.dtype_policy = dtype_policy

    @staticmethod
    def policy_of(dtype):
        """The dtype policy of a `dtype` argument: `None` takes the global one."""
        return keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)

    def argument_config(self):
        """{argument: value} of the subclass's own constructor arguments (JSON values)."""
        raise NotImplementedError

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            **self.argument_config(),
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, **overrides):
        """The backbone of `preset` (one of `BACKBONE_PRESETS`), any of its
        arguments overridden (`image_size`, `synchronized_bn`, `dtype`, `name`;
        `width` for a family that `takes_width`, ...). Called on a subclass, only
        that family's presets are taken.

        Example:
            >>> backbone = Backbone.from_preset("seresnet18", width=0.25, image_size=64)
            >>> backbone.output_shape
            (None, 2, 2, 128)
        """
        presets = presets_of(cls)
        if preset not in presets:
            raise ValueError(f"unknown `arch` {preset!r}; choose one of {', '.join(sorted(presets))}")
        backbone_class, arguments = presets[preset]
        return backbone_class(**{**arguments, "name": f"{preset}_backbone", **overrides})


def register_presets(presets, backbone_class):
    """Adds {name: arguments} presets of `backbone_class` to BACKBONE_PRESETS."""
    for name, arguments in presets.items():
        if name in BACKBONE_PRESETS:
            raise ValueError(f"preset {name!r} is registered twice")
        BACKBONE_PRESETS[name] = (backbone_class, dict(arguments))


def presets_of(backbone_class=Backbone):
    """{name: (class, arguments)} of the presets whose class is `backbone_class` or under it."""
    return {name: entry for name, entry in BACKBONE_PRESETS.items() if issubclass(entry[0], backbone_class)}


def backbone_class(preset):
    """The Backbone subclass of `preset`; a ValueError naming the presets for an unknown one."""
    if preset not in BACKBONE_PRESETS:
        raise ValueError(f"unknown `arch` {preset!r}; choose one of {', '.join(sorted(BACKBONE_PRESETS))}")
    return BACKBONE_PRESETS[preset][0]
