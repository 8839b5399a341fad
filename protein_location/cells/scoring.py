"""The HPA 2021 competition's metric: mean over classes of the average
precision of cell detections at IoU >= 0.6, with OpenImages' matching.

Every image's detections of a class are pooled and ranked by confidence (a
cell's confidence must rank across images). Going down that ranking, a
detection is compared with the truth cells of its image that carry the
class; the one it overlaps most is its match when their IoU reaches the
threshold: a true positive the first time that truth cell is matched, a
false positive (a duplicate) afterwards. Below the threshold it is a false
positive. Average precision is the area under the precision-recall curve
with precision made non-increasing (the TensorFlow Object Detection API's
`compute_average_precision`, which OpenImages' evaluation uses); classes
without truth cells are left out of the mean.
"""

import dataclasses
import posixpath

import numpy as np

from protein_location.cells import masks
from protein_location.core.errors import CellsError

IOU_THRESHOLD = 0.6


def average_precision(confidences, true_positive, num_truth):
    """AP of one class from its detections' confidences and TP flags, over `num_truth` truth cells."""
    if num_truth == 0:
        return float("nan")
    if len(confidences) == 0:
        return 0.0
    order = np.argsort(-np.asarray(confidences, np.float64), kind="stable")
    hits = np.asarray(true_positive, bool)[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    precision, recall = tp / (tp + fp), tp / num_truth
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def match_detections(detections, truth_rles, truth_classes, class_index, iou_threshold=IOU_THRESHOLD):
    """TP flags of one image's detections of class `class_index`.

    detections: [(confidence, COCO RLE)], any order; truth_rles: {cell: RLE};
    truth_classes: {cell: set of classes}. Returns (confidences, flags) in
    the order of decreasing confidence.
    """
    detections = sorted(detections, key=lambda d: -d[0])
    confidences = [d[0] for d in detections]
    truth = [cell for cell in truth_rles if class_index in truth_classes.get(cell, ())]
    if not detections or not truth:
        return confidences, [False] * len(detections)
    ious = np.asarray(
        masks.coco_api().iou([d[1] for d in detections], [truth_rles[c] for c in truth], [0] * len(truth)), np.float64
    ).reshape(len(detections), len(truth))
    matched, flags = np.zeros(len(truth), bool), []
    for row in ious:
        best = int(np.argmax(row))
        hit = row[best] >= iou_threshold and not matched[best]
        matched[best] |= hit
        flags.append(bool(hit))
    return confidences, flags


def cell_map(predictions, truth, num_classes, iou_threshold=IOU_THRESHOLD):
    """(mAP, [AP per class, NaN where no truth cell has the class]).

    predictions: {Id: [(class, confidence, RLE)]}; truth: {Id: (cell RLEs,
    {cell: set of classes})}. An Id in truth without predictions has none; an
    Id only in predictions has no truth cells (its detections are false
    positives).
    """
    confidences = [[] for _ in range(num_classes)]
    flags = [[] for _ in range(num_classes)]
    counts = np.zeros(num_classes, int)
    for image_id, (rles, classes) in truth.items():
        for cell_classes in classes.values():
            for k in cell_classes:
                counts[k] += 1
    for image_id in sorted(set(predictions) | set(truth)):  # a fixed order: ties rank the same every run
        rles, classes = truth.get(image_id, ({}, {}))
        by_class = {}
        for k, confidence, rle in predictions.get(image_id, []):
            by_class.setdefault(k, []).append((confidence, rle))
        for k, detections in by_class.items():
            found, hits = match_detections(detections, rles, classes, k, iou_threshold)
            confidences[k] += found
            flags[k] += hits
    per_class = [average_precision(confidences[k], flags[k], counts[k]) for k in range(num_classes)]
    scored = [ap for ap in per_class if not np.isnan(ap)]
    return (float(np.mean(scored)) if scored else float("nan")), per_class


# --- The files: a submission, and per-cell truth ------------------------------------------------------------


def read_submission(path, num_classes):
    """{ID: [(class, confidence, RLE)]} of an HPA 2021 submission CSV."""
    from protein_location.inference import submission

    table = submission.read_csv(path, ["ID", "ImageWidth", "ImageHeight", "PredictionString"])
    predictions = {}
    for line, (image_id, width, height, text) in enumerate(
        zip(table["ID"], table["ImageWidth"], table["ImageHeight"], table["PredictionString"]), start=2
    ):
        where = f"{path} line {line}"
        if image_id in predictions:
            raise CellsError(f"{where}: duplicate ID {image_id}")
        fields = text.split()
        if len(fields) % 3:
            raise CellsError(
                f"{where}: PredictionString is not a sequence of 'class confidence mask' triples ({len(fields)} fields)"
            )
        entries = []
        for k, confidence, mask in zip(fields[0::3], fields[1::3], fields[2::3]):
            try:
                k, confidence = int(k), float(confidence)
            except ValueError:
                raise CellsError(f"{where}: {k!r} {confidence!r} is not a class index and a confidence") from None
            if not 0 <= k < num_classes:
                raise CellsError(f"{where}: class {k} is outside 0..{num_classes - 1}")
            try:
                entries.append((k, confidence, masks.rle_of(mask, int(height), int(width))))
            except CellsError as error:
                raise CellsError(f"{where}: {error}") from None
        predictions[image_id] = entries
    return predictions


def read_truth(csv_path, masks_dir, label_set=None):
    """(per-cell truth {Id: (RLEs of every cell in its label image, {cell: classes})}, label set) from a
    CSV `Id,Cell,Target` (2018) or `ID,Cell,Label` (2021) and the label
    images `<masks_dir>/<Id>.png` (16-bit, 0: background); `label_set`
    ("hpa2018"/"hpa2021") overrides the classes the header implies."""
    from protein_location.core import labels as labels_lib
    from protein_location.inference import submission

    table = submission.read_csv(csv_path, [])
    detected = labels_lib.label_set_of_header([c for c in table.columns if c != "Cell"])
    if detected is None or "Cell" not in table.columns:
        raise CellsError(
            f"{csv_path}: expected columns Id,Cell,Target (hpa2018) or ID,Cell,Label (hpa2021), "
            f"found {','.join(table.columns)!r}"
        )
    label_set = labels_lib.label_set_named(label_set) if label_set else detected
    classes = {}
    for line, (image_id, cell, target) in enumerate(
        zip(table[detected.id_column], table["Cell"], table[detected.label_column]), start=2
    ):
        try:
            classes.setdefault(image_id, {})[int(cell)] = set(labels_lib.parse_target(target, label_set.num_classes))
        except ValueError as error:
            raise CellsError(f"{csv_path} line {line}: {error} ({label_set.name})") from None
    truth = {}
    for image_id, cells in classes.items():
        path = posixpath.join(masks_dir, f"{image_id}.png")
        rles = masks.cell_rles(masks.read_label_image(path, image_id, "for the per-cell truth"))
        absent = sorted(set(cells) - set(rles))
        if absent:
            raise CellsError(f"{csv_path}: Id {image_id} cell {absent[0]} is not in {path}")
        truth[image_id] = (rles, cells)  # every cell of the label image: those without a class count as found or not
    return truth, label_set


def cells_found(detected, truth_rles, min_share=0.0, iou_threshold=IOU_THRESHOLD):
    """(found, counted) of one image: of its truth cells with at least
    `min_share` of the median truth cell's area (0: all of them), how many
    some detected mask overlaps at IoU >= the threshold, whatever the class.
    How well a segmentation finds the cells, apart from how it labels them.

    detected: [RLE] (repeats allowed); truth_rles: {cell: RLE}.
    """
    api = masks.coco_api()
    cells = list(truth_rles.values())
    if not cells:
        return 0, 0
    areas = np.asarray(api.area(cells), np.float64)
    cells = [rle for rle, area in zip(cells, areas) if area >= min_share * np.median(areas)]
    if not detected:
        return 0, len(cells)
    iou = np.asarray(api.iou(cells, list(detected), [0] * len(detected)), np.float64).reshape(len(cells), -1)
    return int(np.sum(iou.max(axis=1) >= iou_threshold)), len(cells)


@dataclasses.dataclass(frozen=True)
class CellScore:
    """What `score --cells` reports: the mAP, and the segmentation's recall
    (truth cells found at IoU >= 0.6 by some mask, over all truth cells and
    over the whole ones: at least half the median cell's area in their image,
    leaving out slivers cut by the frame)."""

    mean_ap: float
    per_class: list
    label_set: object
    found: int
    truth_cells: int
    found_whole: int
    whole_cells: int


def score_files(submission_path, truth_csv, masks_dir, label_set=None):
    """The CellScore of a submission against per-cell truth files;
    `label_set` ("hpa2018"/"hpa2021") overrides the class count the truth's
    header implies, as for image-level scores."""
    truth, label_set = read_truth(truth_csv, masks_dir, label_set)
    predictions = read_submission(submission_path, label_set.num_classes)
    unknown = sorted(set(predictions) - set(truth))
    if unknown:
        raise CellsError(f"{submission_path}: {len(unknown)} IDs have no per-cell truth, e.g. {unknown[0]}")
    mean, per_class = cell_map(predictions, truth, label_set.num_classes)
    counts = np.zeros(4, int)
    for image_id, (rles, _) in truth.items():
        # A cell's mask repeats once per class it is given: each distinct mask once.
        detected = list({rle["counts"]: rle for _, _, rle in predictions.get(image_id, [])}.values())
        counts += [*cells_found(detected, rles), *cells_found(detected, rles, min_share=0.5)]
    return CellScore(mean, per_class, label_set, *map(int, counts))
