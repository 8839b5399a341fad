"""HPA label sets and conversions between label formats.

Two releases, two label sets, both first-class:

- `hpa2018`: the 28 subcellular locations of the Kaggle "Human Protein Atlas
  Image Classification" release (also the HPAv18 external data): `train.csv`
  is `Id,Target`, Target a space-separated list of indices ("16 0").
- `hpa2021`: the 19 classes of the Kaggle "HPA Single Cell Classification"
  release: `train.csv` is `ID,Label`, Label `|`-separated indices ("8|5|0").

The indices of one release mean nothing in the other (index 8 is Peroxisomes
in 2018 and Intermediate filaments in 2021). A dataset has exactly one label
set, recorded as `class_names` in its dataset.json; everything downstream
takes the class list from there, never from a constant.
"""

import dataclasses
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

# The first eight classes (Nucleoplasm ... Golgi apparatus) are those of 2018
# at the same indices; from index 8 on the two sets part.
HPA2021_CLASS_NAMES = CLASS_NAMES[:8] + (
    "Intermediate filaments",
    "Actin filaments",
    "Microtubules",
    "Mitotic spindle",
    "Centrosome",
    "Plasma membrane",
    "Mitochondria",
    "Aggresome",
    "Cytosol",
    "Vesicles and punctate cytosolic patterns",
    "Negative",
)


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """One release's classes and the header of its labels CSV."""

    name: str
    class_names: tuple
    id_column: str
    label_column: str

    @property
    def num_classes(self):
        return len(self.class_names)


HPA2018 = LabelSet("hpa2018", CLASS_NAMES, "Id", "Target")
HPA2021 = LabelSet("hpa2021", HPA2021_CLASS_NAMES, "ID", "Label")
LABEL_SETS = {label_set.name: label_set for label_set in (HPA2018, HPA2021)}


def label_set_named(name):
    """`hpa2018` or `hpa2021` -> the LabelSet; ValueError naming the choices."""
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; expected one of {', '.join(LABEL_SETS)}")
    return LABEL_SETS[name]


def label_set_of_header(columns):
    """The LabelSet whose CSV header starts `columns` (`Id,Target` -> hpa2018,
    `ID,Label` -> hpa2021), or None."""
    for label_set in LABEL_SETS.values():
        if list(columns[:2]) == [label_set.id_column, label_set.label_column]:
            return label_set
    return None


def expected_headers():
    """What a labels CSV may start with, for error messages."""
    return " or ".join(f"{s.id_column},{s.label_column} ({s.name})" for s in LABEL_SETS.values())


def label_set_of_classes(class_names):
    """The name of the label set with exactly these classes, or "custom"."""
    for label_set in LABEL_SETS.values():
        if tuple(class_names) == label_set.class_names:
            return label_set.name
    return "custom"


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


def parse_target(target, num_classes):
    """`"16 0"` (2018) or `"16|0"` (2021) -> `[0, 16]`; raises ValueError
    naming what is wrong. Either separator is read in either release."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"empty Target {target!r}")
    indices = []
    for token in re.split(r"[\s|]+", target.strip()):
        if not re.fullmatch(r"\d+", token):
            raise ValueError(f"label {token!r} is not an integer in 0-{num_classes - 1}")
        index = int(token)
        if index >= num_classes:
            raise ValueError(f"label {index} is outside 0-{num_classes - 1}")
        indices.append(index)
    return sorted(set(indices))


def format_target(indices):
    """`[0, 16]` -> `"0 16"`, the Kaggle submission format."""
    return " ".join(str(int(i)) for i in sorted(indices))


def to_multi_hot(indices, num_classes):
    """Label indices -> float32 vector of length num_classes."""
    vector = np.zeros(num_classes, np.float32)
    vector[list(indices)] = 1.0
    return vector


def from_multi_hot(vector):
    """Multi-hot (or 0/1 predictions) -> sorted list of label indices."""
    return [int(i) for i in np.flatnonzero(np.asarray(vector) > 0)]
