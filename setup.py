from setuptools import find_packages, setup

setup(
    name="protein-location",
    version="0.1.0",
    description="Where a human protein sits in a cell: HPA images -> TFRecords -> SE-ResNet -> SavedModel",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["protein_location", "protein_location.*", "data_prep", "data_prep.*"]),
    py_modules=["train_keras", "protein_location_command"],
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        # TF 2.21 no longer installs TensorBoard; the training logs need it.
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26",
        # The TFRecord framing's checksum in C: conversion workers write shards without TensorFlow.
        "google-crc32c>=1.5",
        "pandas>=2.0",
        "opencv-python-headless>=4.8",
        "scikit-learn>=1.3",
        "iterative-stratification>=0.1.9",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        # --tflite files are written with TensorFlow alone; LiteRT runs and checks them.
        "tflite": ["ai-edge-litert>=2.0"],
        # --onnx: tf2onnx 1.17 converts under TF 2.21 / numpy 2 (see export/onnx_format.py); onnxruntime checks.
        "onnx": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20"],
        # --runner beam: conversion and batch prediction on Apache Beam (DirectRunner here; Dataflow needs
        # apache-beam[gcp], Flink/Spark their job servers). 2.77's protobuf<7 sits with TensorFlow 2.21.
        "beam": ["apache-beam>=2.77,<3"],
        # TIFF stain files (HPA 2021's 16-bit downloads, the image server's .tif.gz): TensorFlow has no decoder;
        # imagecodecs decodes the compressions tifffile leaves to it (LZW, which OpenCV writes).
        "tiff": ["tifffile>=2024.1", "imagecodecs>=2024.1"],
        # The models on other Keras backends (KERAS_BACKEND=jax), without TensorFlow: protein_location.models.
        "jax": ["jax[cpu]>=0.4.36"],
        # Single cells (protein_location.cells): classical segmentation, and masks in the HPA 2021 encoding.
        "cells": ["scikit-image>=0.22", "pycocotools>=2.0.7"],
        # The suite: every extra above, and the linter CI runs (`make test`).
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "ruff>=0.17,<0.18",
            "ai-edge-litert>=2.0",
            "tf2onnx>=1.17",
            "onnx>=1.17",
            "onnxruntime>=1.20",
            "apache-beam>=2.77,<3",
            "tifffile>=2024.1",
            "imagecodecs>=2024.1",
            "jax[cpu]>=0.4.36",
            "scikit-image>=0.22",
            "pycocotools>=2.0.7",
        ],
        # make docs: the documentation site (mkdocs.yml, docs/).
        "docs": ["mkdocs-material>=9.5,<10"],
    },
    entry_points={
        "console_scripts": [
            # One front door to every stage; the stages' own entry points stay.
            "protein-location=protein_location_command:main",
            "hpa-data-prep=data_prep.__main__:main",
            "hpa-train=train_keras:main",
        ]
    },
)
