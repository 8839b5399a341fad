"""Single cells: segmentation of a field into cells, their masks in the HPA
2021 submission's encoding, and the competition's metric (mAP at IoU 0.6).

Needs the `cells` extra (scikit-image, pycocotools):
`pip install 'protein-location[cells]'`.
"""
