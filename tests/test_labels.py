import numpy as np
import pytest

from protein_location.core import labels


def test_28_locations_in_kaggle_order():
    assert labels.NUM_CLASSES == 28 == len(labels.HPA_TRAIN_COUNTS)
    assert labels.CLASS_NAMES[0] == "Nucleoplasm"
    assert labels.CLASS_NAMES[25] == "Cytosol"
    assert labels.CLASS_NAMES[27] == "Rods & rings"


def test_parse_target_reads_kaggle_targets():
    assert labels.parse_target("16 0", 28) == [0, 16]
    assert labels.parse_target("27", 28) == [27]
    assert labels.parse_target(" 5  5 2 ", 28) == [2, 5]


@pytest.mark.parametrize(
    "target, message",
    [
        ("28", "label 28 is outside 0-27"),
        ("3 x", "label 'x' is not an integer in 0-27"),
        ("-1", "label '-1' is not an integer in 0-27"),
        ("1.5", "label '1.5' is not an integer in 0-27"),
        ("", "empty Target ''"),
    ],
)
def test_parse_target_rejects_bad_labels(target, message):
    with pytest.raises(ValueError) as error:
        labels.parse_target(target, 28)
    assert str(error.value) == message


def test_multi_hot_round_trip():
    vector = labels.to_multi_hot([0, 16, 27], 28)
    assert vector.dtype == np.float32 and vector.sum() == 3
    assert labels.from_multi_hot(vector) == [0, 16, 27]
    assert labels.format_target(labels.from_multi_hot(vector)) == "0 16 27"
    assert labels.from_multi_hot(np.zeros(28)) == []


@pytest.mark.parametrize(
    "image_id, valid",
    [
        ("00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", True),
        ("10580_1610_C1_1", True),
        ("../../etc/passwd", False),
        ("a/b", False),
        ("", False),
        ("id with space", False),
    ],
)
def test_is_valid_id(image_id, valid):
    assert labels.is_valid_id(image_id) is valid


def test_hpa2021_has_19_classes_with_its_own_indices():
    hpa2021 = labels.label_set_named("hpa2021")
    assert hpa2021.num_classes == 19 and labels.HPA2018.num_classes == 28
    assert hpa2021.class_names[8] == "Intermediate filaments" != labels.HPA2018.class_names[8]
    assert hpa2021.class_names[17] == "Vesicles and punctate cytosolic patterns"
    assert hpa2021.class_names[18] == "Negative"


@pytest.mark.parametrize(
    "header, name",
    [
        (["Id", "Target"], "hpa2018"),
        (["ID", "Label"], "hpa2021"),
        (["ID", "Label", "Well"], "hpa2021"),
    ],
)
def test_label_set_is_detected_from_the_csv_header(header, name):
    assert labels.label_set_of_header(header).name == name


def test_unknown_header_and_name():
    assert labels.label_set_of_header(["id", "target"]) is None
    with pytest.raises(ValueError) as error:
        labels.label_set_named("hpa2019")
    assert str(error.value) == "unknown label set 'hpa2019'; expected one of hpa2018, hpa2021"
    assert labels.label_set_of_classes(labels.HPA2021_CLASS_NAMES) == "hpa2021"
    assert labels.label_set_of_classes(["a", "b"]) == "custom"


def test_parse_target_reads_2021_labels_against_19_classes():
    assert labels.parse_target("8|5|0", 19) == [0, 5, 8]
    with pytest.raises(ValueError) as error:
        labels.parse_target("19|2", 19)
    assert str(error.value) == "label 19 is outside 0-18"
