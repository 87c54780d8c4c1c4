"""Splits -> tf.data pipelines for Keras (tensorflow is imported inside :func:`tf_datasets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    import tensorflow as tf


from inception_lib.data.readers import INTERPOLATIONS, PHOTOMETRIC_STRENGTH, DataConfig, load_splits

# ----------------------------------------------------------------------------------------------------
# TensorFlow / Keras
# ----------------------------------------------------------------------------------------------------


def _tf_transform(x: tf.Tensor, seed: tf.Tensor | None, cfg: DataConfig, train: bool) -> tf.Tensor:
    """uint8 H x W x C -> normalized float32 size x size x channels (augmented when training)."""
    import tensorflow as tf

    size, augment = cfg.image_size, cfg.augment
    channels_in = x.shape[-1]
    x = tf.cast(x, tf.float32) / 255.0
    if train and augment == "paper":
        seeds = tf.random.experimental.stateless_split(seed, 6)
        begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(x), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
            min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True,
        )
        x = tf.ensure_shape(tf.slice(x, begin, crop), [None, None, channels_in])
        method = tf.random.stateless_uniform([], seeds[1], 0, len(INTERPOLATIONS), dtype=tf.int32)
        x = tf.switch_case(method, [
            (lambda m=m: tf.image.resize(x, [size, size], method=m)) for m in INTERPOLATIONS
        ])
        x = tf.clip_by_value(x, 0.0, 1.0)
        x = tf.image.stateless_random_flip_left_right(x, seeds[2])
        s = PHOTOMETRIC_STRENGTH
        f = [tf.random.stateless_uniform([], seeds[3 + i], 1.0 - s, 1.0 + s) for i in range(3)]
        x = tf.clip_by_value(x * f[0], 0.0, 1.0)
        gray = tf.image.rgb_to_grayscale(x) if x.shape[-1] == 3 else x
        m = tf.reduce_mean(gray)
        x = tf.clip_by_value((x - m) * f[1] + m, 0.0, 1.0)
        if x.shape[-1] == 3:
            gray = tf.image.rgb_to_grayscale(x)
            x = tf.clip_by_value((x - gray) * f[2] + gray, 0.0, 1.0)
    else:
        if cfg.eval_crop is None:
            if tuple(x.shape[:2]) != (size, size):
                x = tf.image.resize(x, [size, size], method="bilinear", antialias=x.shape[0] > size)
        else:
            hw = tf.cast(tf.shape(x)[:2], tf.float32)
            short = float(max(size, round(size / cfg.eval_crop)))
            new = tf.cast(tf.math.round(hw * short / tf.reduce_min(hw)), tf.int32)
            new = tf.maximum(new, int(short))
            x = tf.image.resize(x, new, method="bilinear", antialias=True)
            x = tf.image.resize_with_crop_or_pad(x, size, size)
        if train and augment == "flip":
            x = tf.image.stateless_random_flip_left_right(x, tf.random.experimental.stateless_split(seed, 1)[0])
    if cfg.image_channels == 3 and x.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    x = (x - tf.constant(cfg.norm_mean, tf.float32)) / tf.constant(cfg.norm_std, tf.float32)
    return tf.ensure_shape(x, [size, size, cfg.image_channels])


def tf_datasets(cfg: DataConfig) -> dict[str, tf.data.Dataset]:
    """``tf.data`` pipelines for train / val / test: batches (float32 N x H x W x C normalized, int64 N).

    Train: ``shuffle(seed)`` reshuffled each epoch, augmentation with stateless random ops seeded from a
    ``Dataset.random(seed)`` stream (deterministic for a given seed), ``drop_remainder``. All: parallel
    ``map`` (AUTOTUNE) and ``prefetch`` (AUTOTUNE). Folders are read with ``tf.io`` and decoded lazily.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    out = {}
    for name, split in load_splits(cfg).items():
        train = name == "train"
        if split.images is not None:
            ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        else:
            def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
                return tf.ensure_shape(img, [None, None, 3]), label

            ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels)).map(
                decode, num_parallel_calls=autotune)
        if train:
            ds = ds.shuffle(len(split), seed=cfg.seed, reshuffle_each_iteration=True)
            seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda xy, s: (_tf_transform(xy[0], s, cfg, True), xy[1]), num_parallel_calls=autotune)
            ds = ds.batch(cfg.batch_size, drop_remainder=True)
        else:
            ds = ds.map(lambda x, y: (_tf_transform(x, None, cfg, False), y), num_parallel_calls=autotune)
            ds = ds.batch(cfg.eval_batch)
        options = tf.data.Options()
        options.deterministic = True
        out[name] = ds.with_options(options).prefetch(autotune)
    return out
