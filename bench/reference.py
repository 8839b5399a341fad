"""A plain Keras SE-ResNet-18, the yardstick of issue 29: what a short script
written without this project reaches on the same images.

    python -m bench.reference --data OUT/B128/tfrecords --test OUT/B128/test_tfrecords \
        --epochs 20 --seed 0 --out reference.jsonl

The network, the optimizer and the training loop are written here on purpose,
not taken from `protein_location` (only the records are read with its input
pipeline): 7x7 stem, four stages of two basic blocks with squeeze-excitation,
global pooling, a sigmoid head; Adam at a constant 1e-3, binary
cross-entropy, batch 32, random flips, float32; every training image (train
and val splits) is trained on; the labels are probabilities at a fixed 0.3.
`--train-splits train` trains on the train split alone, as train_keras.py
does, so the data a run sees can be told apart from the method.
Held-out macro F1 is appended to --out as one JSON line.
"""

import argparse
import json
import time

import numpy as np


def load_split(data_dir, split):
    from protein_location.data import input_reader

    images, labels = [], []
    for image, label in input_reader.make_dataset(data_dir, split, 64):
        images.append(image.numpy().astype(np.uint8))
        labels.append(label.numpy())
    return np.concatenate(images), np.concatenate(labels)


def random_flips(image):
    """`image` flipped up-down and left-right, each at random: the 4 views, as float32."""
    import tensorflow as tf

    # No op seeds: the global seed (keras.utils.set_random_seed) gives each flip its own; one op seed
    # for both would flip both ways together, the identity or a half turn only.
    return tf.cast(tf.image.random_flip_left_right(tf.image.random_flip_up_down(image)), tf.float32)


def se_resnet18(image_size, num_classes):
    import keras
    from keras import layers

    def block(x, filters, stride):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        squeeze = layers.GlobalAveragePooling2D(keepdims=True)(y)
        squeeze = layers.Dense(filters // 16, activation="relu")(squeeze)
        y = y * layers.Dense(filters, activation="sigmoid")(squeeze)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization()(shortcut)
        return layers.ReLU()(y + shortcut)

    inputs = keras.Input((image_size, image_size, 4))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False)(x)))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, filters in enumerate((64, 128, 256, 512)):
        x = block(x, filters, 1 if stage == 0 else 2)
        x = block(x, filters, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="sigmoid")(x))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset folder (convert's train and val splits)")
    parser.add_argument("--test", required=True, help="held-out dataset folder (its train split is scored)")
    parser.add_argument("--train-splits", nargs="+", default=["train", "val"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSONL file the result is appended to")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from protein_location.evaluation import thresholds

    keras.utils.set_random_seed(args.seed)
    parts = [load_split(args.data, split) for split in args.train_splits]
    x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_test, y_test = load_split(args.test, "train")

    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=args.seed)
        .map(lambda image, label: (random_flips(image), label))
        .batch(args.batch_size)
        .prefetch(2)
    )
    model = se_resnet18(x_train.shape[1], y_train.shape[1])
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    p_test = model.predict(x_test.astype(np.float32), batch_size=64, verbose=0)
    result = {
        "data": args.data,
        "train_splits": args.train_splits,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_images": len(x_train),
        "train_seconds": round(seconds, 1),
        f"test_f1_at_{args.threshold}": thresholds.macro_f1(y_test, p_test >= args.threshold),
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
