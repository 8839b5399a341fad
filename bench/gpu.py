"""Training and inference images/s of the models on one accelerator, through
Keras 3 on JAX: no TensorFlow, no tf.data (the GPU machine has neither).

    KERAS_BACKEND=jax python -m bench.gpu --out gpu.json
    KERAS_BACKEND=jax python -m bench.gpu --quick      # CPU, tiny sizes: the code path in seconds

For each architecture and image side: the model in mixed_bfloat16 (float32
variables, bfloat16 compute, the float32 sigmoid head), random uint8 RGBY
images and random multi-hot labels already in device memory (several
batches, rotated, so no step reads what the last one left in cache; never
zeros), then
- training: one jitted step (the model's forward and backward through
  `stateless_call`, BCE, AdamW through `stateless_apply`, buffers donated),
  timed over `--steps` steps after a warm-up, the clock read after the last
  loss is ready; the median of `--repeats`;
- inference: the jitted forward in inference mode, likewise.
A batch that does not fit is halved until it does, and the batch used is
reported. FLOPs per image are XLA's cost analysis of the lowered step
(before the compiler rewrites convolutions into library calls it cannot
count); the share of the card is achieved FLOP/s over `--peak-tflops` (the
datasheet's dense bf16 rate) and over a bf16 matrix product measured in the
same run. Results are appended to `--out` as each one finishes, so a run cut
short keeps what it measured.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

ARCHS = ("seresnet18", "seresnet50", "seresnext50", "efficientnetv2b0", "densenet121")
SIZES = (224, 512)
NUM_CLASSES = 28
# NVIDIA's datasheet figure for H100/H200 SXM, dense bfloat16 (no sparsity).
H200_BF16_TFLOPS = 989.0
QUICK = {"archs": ("seresnet18",), "sizes": (32,), "batch": 4, "steps": 2, "repeats": 1, "width": 0.125, "matmul": 256}


def _flops(lowered):
    """FLOPs of a lowered computation by XLA's cost analysis (None if it gives none)."""
    try:
        analysis = lowered.cost_analysis()
    except Exception:  # some jax versions analyse only compiled computations
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


def _median_seconds(run, steps, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times), times


def matmul_tflops(side, repeats):
    """A side x side x side bf16 matrix product's TFLOP/s on random data: the card's measured ceiling."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(1), 2)
    a = jax.random.normal(keys[0], (side, side), jnp.bfloat16)
    b = jax.random.normal(keys[1], (side, side), jnp.bfloat16)
    product = jax.jit(lambda x, y: x @ y)
    product(a, b).block_until_ready()

    def run(steps):
        out = None
        for _ in range(steps):
            out = product(a, b)
        out.block_until_ready()

    seconds, _ = _median_seconds(run, 10, repeats)
    return 2.0 * side**3 / seconds / 1e12


def _device_batches(batch, size, count, seed):
    import jax
    import jax.numpy as jnp

    batches = []
    for key in jax.random.split(jax.random.key(seed), count):
        image_key, label_key = jax.random.split(key)
        images = jax.random.randint(image_key, (batch, size, size, 4), 0, 256, jnp.int32).astype(jnp.uint8)
        labels = (jax.random.uniform(label_key, (batch, NUM_CLASSES)) < 0.1).astype(jnp.float32)
        batches.append((images, labels))
    jax.block_until_ready(batches)
    return batches


def measure(arch, size, batch, steps, repeats, width, log=print):
    """{training and inference images/s, FLOPs per image, batch} of one model at one side."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        return _measure(arch, size, batch, steps, repeats, width, log)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _measure(arch, size, batch, steps, repeats, width, log):
    import jax
    import jax.numpy as jnp
    import keras

    from protein_location import models

    keras.utils.set_random_seed(0)
    model = models.build_classifier(
        arch, image_size=size, num_classes=NUM_CLASSES, width=width if arch in models.PRESETS else 1.0
    )
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=1e-4)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.BinaryCrossentropy()

    def loss_and_state(trainable, non_trainable, images, labels):
        predicted, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
        return loss_fn(labels, predicted), non_trainable

    gradients = jax.value_and_grad(loss_and_state, has_aux=True)

    def train_step(state, images, labels):
        trainable, non_trainable, optimizer_state = state
        (loss, non_trainable), grads = gradients(trainable, non_trainable, images, labels)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_state)

    def infer_step(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    train_jit = jax.jit(train_step, donate_argnums=0)
    infer_jit = jax.jit(infer_step)
    result = {"arch": arch, "size": size, "parameters": int(model.count_params())}
    while True:
        try:
            batches = _device_batches(batch, size, 4, seed=size)
            # Copies: the step donates its state, and a batch that fails at run time must leave the model's own.
            state = jax.tree.map(
                jnp.copy,
                (
                    [v.value for v in model.trainable_variables],
                    [v.value for v in model.non_trainable_variables],
                    [v.value for v in optimizer.variables],
                ),
            )
            lowered = train_jit.lower(state, *batches[0])
            train_flops = _flops(lowered)
            start = time.perf_counter()
            compiled = lowered.compile()
            compile_seconds = time.perf_counter() - start
            loss, state = compiled(state, *batches[0])
            loss.block_until_ready()
            break
        except Exception as error:  # XLA raises its runtime error for an allocation that fails
            out_of_memory = "RESOURCE_EXHAUSTED" in str(error) or "Out of memory" in str(error)
            if not out_of_memory or batch == 1:
                raise
            log(f"gpu: {arch} at {size}: batch {batch} does not fit; trying {batch // 2}")
            batch //= 2
    holder = {"state": state, "loss": loss}

    def train(count):
        state, loss = holder["state"], None
        for step in range(count):
            loss, state = compiled(state, *batches[step % len(batches)])
        loss.block_until_ready()
        holder["state"], holder["loss"] = state, loss

    train(2)
    train_seconds, train_times = _median_seconds(train, steps, repeats)
    trainable, non_trainable, _ = holder["state"]
    infer_lowered = infer_jit.lower(trainable, non_trainable, batches[0][0])
    infer_flops = _flops(infer_lowered)
    infer_compiled = infer_lowered.compile()

    def infer(count):
        out = None
        for step in range(count):
            out = infer_compiled(trainable, non_trainable, batches[step % len(batches)][0])
        out.block_until_ready()

    infer(2)
    infer_seconds, infer_times = _median_seconds(infer, steps, repeats)
    result.update(
        {
            "batch": batch,
            "steps": steps,
            "repeats": repeats,
            "compile_seconds": round(compile_seconds, 1),
            "train_images_per_second": batch / train_seconds,
            "train_step_seconds": train_times,
            "infer_images_per_second": batch / infer_seconds,
            "infer_step_seconds": infer_times,
            "train_flops_per_image": train_flops / batch if train_flops else None,
            "infer_flops_per_image": infer_flops / batch if infer_flops else None,
            "last_loss": float(holder["loss"]),
        }
    )
    return result


def share(result, key, tflops):
    flops = result.get(f"{key}_flops_per_image")
    if not flops or not tflops:
        return None
    return result[f"{key}_images_per_second"] * flops / (tflops * 1e12)


def table(results, peak, measured):
    lines = [
        f"| arch | side | batch | training img/s | share of {peak:g} (measured {measured:.3g}) TFLOP/s | "
        "inference img/s | share | GFLOPs/img train / infer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['size']} | | {r['error']} | | | | |")
            continue
        gflops = "/".join(
            f"{r[k] / 1e9:.2f}" if r[k] else "?" for k in ("train_flops_per_image", "infer_flops_per_image")
        )

        def pct(key):
            a, b = share(r, key, peak), share(r, key, measured)
            return "?" if a is None else f"{100 * a:.1f}% ({100 * b:.1f}%)"

        lines.append(
            f"| {r['arch']} | {r['size']} | {r['batch']} | {r['train_images_per_second']:.0f} | "
            f"{pct('train')} | {r['infer_images_per_second']:.0f} | {pct('infer')} | {gflops} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--batch", type=int, default=256, help="images per step (halved until it fits)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0, help="SE-ResNet width multiplier")
    parser.add_argument(
        "--peak-tflops", type=float, default=H200_BF16_TFLOPS, help="the card's dense bf16 rate by its datasheet"
    )
    parser.add_argument("--matmul", type=int, default=8192, help="side of the bf16 matrix product timed as ceiling")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds: start no new model after this (what was measured is kept)",
    )
    parser.add_argument("--quick", action="store_true", help="CPU-sized: seresnet18 at 32 px, batch 4, 2 steps")
    parser.add_argument("--out", default=None, help="JSON lines, one per model and side, appended as measured")
    args = parser.parse_args(argv)
    if args.quick:
        args.archs, args.sizes, args.batch = list(QUICK["archs"]), list(QUICK["sizes"]), QUICK["batch"]
        args.steps, args.repeats, args.width, args.matmul = (
            QUICK["steps"],
            QUICK["repeats"],
            QUICK["width"],
            QUICK["matmul"],
        )
    import jax
    import keras

    start = time.perf_counter()
    device = jax.devices()[0]
    header = {
        "device": f"{device.platform}: {getattr(device, 'device_kind', device)}",
        "jax": jax.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    header["matmul_tflops"] = matmul_tflops(args.matmul, args.repeats)
    print(json.dumps(header), flush=True)
    results = []
    for size in args.sizes:  # every model at the first side before any at the next: a cut run has a whole row
        for arch in args.archs:
            if args.time_budget is not None and time.perf_counter() - start > args.time_budget:
                print(f"gpu: time budget spent; {arch} at {size} not measured", flush=True)
                continue
            try:
                result = measure(arch, size, args.batch, args.steps, args.repeats, args.width)
            except Exception as error:
                result = {"arch": arch, "size": size, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            result["elapsed_seconds"] = round(time.perf_counter() - start, 1)
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({**header, **result}) + "\n")
    print(table(results, args.peak_tflops, header["matmul_tflops"]), flush=True)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
