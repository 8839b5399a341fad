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

import numpy as np

from protein_location.cells import masks

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
    ious = np.asarray(masks._coco().iou([d[1] for d in detections], [truth_rles[c] for c in truth],
                                        [0] * len(truth)), np.float64).reshape(len(detections), len(truth))
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
