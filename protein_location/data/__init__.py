"""Reading converted datasets: the TFRecords `data_prep convert` wrote, as tf.data pipelines.

| module | job |
| --- | --- |
| `input_reader` | the training, evaluation and prediction pipelines; sharding over workers, evaluation padding |
| `augment` | augmentations as TensorFlow ops, the 8 dihedral views of test-time augmentation |
"""
