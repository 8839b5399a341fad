"""Pretrained three-channel weights into a four-stain `ApplicationBackbone`."""

import os

import numpy as np

from protein_location.core.errors import WeightsError
from protein_location.models.application_backbone import application_spec, build_network

RGB_ORDER = {"torch": (0, 1, 2), "caffe": (2, 1, 0)}  # where R, G and B sit in the stem's kernel


def rgby_stem_kernel(kernel, mode="torch"):
    """The four-stain kernel [..., 4, filters] of a pretrained three-channel
    stem kernel [..., 3, filters].

    Red, green and blue take the pretrained kernels of those colours (a
    "caffe"-mode kernel is in BGR order); yellow (the ER stain, which the
    Human Protein Atlas shows as red plus green) starts as the mean of the
    red and green kernels. The input scale of the backbone keeps the first
    activations' scale (`application_backbone.input_scale`).
    """
    kernel = np.asarray(kernel)
    if kernel.shape[-2] != 3:
        raise ValueError(f"a three-channel stem kernel has 3 input channels, not shape {kernel.shape}")
    red, green, blue = (kernel[..., index, :] for index in RGB_ORDER[mode])
    return np.stack([red, green, blue, (red + green) / 2], axis=-2)


def three_channel_application(arch, weights, image_size=None):
    """`arch`'s keras.applications network without its top, on three
    channels, with `weights`: "imagenet" (downloaded by Keras, or taken from
    its cache in ~/.keras/models) or the path of a Keras weights file of it.
    A WeightsError in one line when the file or the download is not there."""
    if weights != "imagenet" and not os.path.exists(weights):
        raise WeightsError(
            f"`weights` {weights}: no such file; give a Keras weights file of {arch} without its "
            "top (what keras.applications downloads), imagenet or none"
        )
    try:
        return build_network(arch, 3, image_size, weights)
    except Exception as error:  # a failed download or a file of another network: Keras raises many kinds
        reason = " ".join(str(error).split())[:300]
        if weights == "imagenet":
            raise WeightsError(
                f"`weights` imagenet: Keras could not download the ImageNet weights of {arch} "
                f"({reason}); download them where there is internet and pass `weights` PATH, "
                "or train from scratch with `weights` none"
            ) from None
        raise WeightsError(
            f"`weights` {weights}: not a Keras weights file of {arch} without its top ({reason})"
        ) from None


def load_three_channel_weights(backbone, weights):
    """Copies pretrained three-channel weights (`three_channel_application`'s
    `weights`) into `backbone`, an `ApplicationBackbone` of the same arch:
    every weight as it is, the stem's kernel through `rgby_stem_kernel`.

    Returns `backbone`.
    """
    _, mode, _ = application_spec(backbone.arch)
    source = three_channel_application(backbone.arch, weights, backbone.image_size)
    targets = backbone.application.weights
    if len(source.weights) != len(targets):
        raise WeightsError(
            f"`weights` {weights}: {len(source.weights)} weights where {backbone.arch} on four "
            f"stains has {len(targets)}"
        )
    stems = 0
    for value, target in zip(source.get_weights(), targets):
        if value.shape == tuple(target.shape):
            target.assign(value)
        elif value.shape[-2] == 3 and tuple(target.shape) == value.shape[:-2] + (4, value.shape[-1]):
            target.assign(rgby_stem_kernel(value, mode))
            stems += 1
        else:
            raise WeightsError(
                f"`weights` {weights}: {target.path} has shape {tuple(target.shape)}, the file's {value.shape}"
            )
    if stems != 1:
        raise WeightsError(f"`weights` {weights}: found {stems} three-channel stem kernels in {backbone.arch}, not 1")
    return backbone
