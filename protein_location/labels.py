"""The 28 HPA subcellular locations and conversions between label formats.

Label indices follow the Kaggle "Human Protein Atlas Image Classification"
release: `Target` is a space-separated list of these indices ("16 0").
"""

import re

import numpy as np

CLASS_NAMES = (
    "Nucleoplasm",
    "Nuclear membrane",
    "Nucleoli",
    "Nucleoli fibrillar center",
    "Nuclear speckles",
    "Nuclear bodies",
    "Endoplasmic reticulum",
    "Golgi apparatus",
    "Peroxisomes",
    "Endosomes",
    "Lysosomes",
    "Intermediate filaments",
    "Actin filaments",
    "Focal adhesion sites",
    "Microtubules",
    "Microtubule ends",
    "Cytokinetic bridge",
    "Mitotic spindle",
    "Microtubule organizing center",
    "Centrosome",
    "Lipid droplets",
    "Plasma membrane",
    "Cell junctions",
    "Mitochondria",
    "Aggresome",
    "Cytosol",
    "Cytoplasmic bodies",
    "Rods & rings",
)
NUM_CLASSES = len(CLASS_NAMES)

# Images per class in the Kaggle training set (31,072 images). The synthetic
# generator shapes its label frequencies after these.
HPA_TRAIN_COUNTS = (
    12885, 1254, 3621, 1561, 1858, 2513, 1008, 2822, 53, 45, 28, 1093, 688,
    537, 1066, 21, 530, 210, 902, 1482, 172, 3777, 802, 2965, 322, 8228, 328,
    11,
)  # fmt: skip

# Channel order everywhere in the project: the HPA stains as RGBY.
CHANNELS = ("red", "green", "blue", "yellow")

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def is_valid_id(image_id):
    """True for HPA Ids (Kaggle UUIDs, HPAv18 `10580_1610_C1_1`), nothing else."""
    return isinstance(image_id, str) and _ID_PATTERN.fullmatch(image_id) is not None


def parse_target(target):
    """`"16 0"` -> `[16, 0]`; raises ValueError naming what is wrong."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"empty Target {target!r}")
    indices = []
    for token in target.split():
        if not re.fullmatch(r"\d+", token):
            raise ValueError(f"label {token!r} is not an integer in 0-{NUM_CLASSES - 1}")
        index = int(token)
        if index >= NUM_CLASSES:
            raise ValueError(f"label {index} is outside 0-{NUM_CLASSES - 1}")
        indices.append(index)
    return sorted(set(indices))


def format_target(indices):
    """`[0, 16]` -> `"0 16"`, the Kaggle submission format."""
    return " ".join(str(int(i)) for i in sorted(indices))


def to_multi_hot(indices):
    """Label indices -> float32 vector of length NUM_CLASSES."""
    vector = np.zeros(NUM_CLASSES, np.float32)
    vector[list(indices)] = 1.0
    return vector


def from_multi_hot(vector):
    """Multi-hot (or 0/1 predictions) -> sorted list of label indices."""
    return [int(i) for i in np.flatnonzero(np.asarray(vector) > 0)]
