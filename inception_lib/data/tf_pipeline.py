"""Splits -> tf.data pipelines for Keras (tensorflow is imported inside :func:`tf_datasets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inception_lib.data.readers import INTERPOLATIONS, PHOTOMETRIC_STRENGTH, DataConfig, load_splits

__all__ = ["tf_datasets"]

if TYPE_CHECKING:  # pragma: no cover - typing only
    import tensorflow as tf


def _tf_transform(x: tf.Tensor, seed: tf.Tensor | None, cfg: DataConfig, train: bool) -> tf.Tensor:
    """uint8 H x W x C -> normalized float32 size x size x channels (augmented when training), as the torch side."""
    import tensorflow as tf
    size, augment = cfg.image_size, cfg.augment
    x = tf.cast(x, tf.float32) / 255.0
    if train and augment == "paper":
        seeds = tf.random.experimental.stateless_split(seed, 6)
        # The crop's aspect ratio is uniform here (log-uniform in torchvision's RandomResizedCrop).
        begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(x), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
            min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True,
        )
        x = tf.ensure_shape(tf.slice(x, begin, crop), [None, None, x.shape[-1]])
        method = tf.random.stateless_uniform([], seeds[1], 0, len(INTERPOLATIONS), dtype=tf.int32)
        x = tf.switch_case(method, [(lambda m=m: tf.image.resize(x, [size, size], method=m)) for m in INTERPOLATIONS])
        x = tf.image.stateless_random_flip_left_right(tf.clip_by_value(x, 0.0, 1.0), seeds[2])
        s = PHOTOMETRIC_STRENGTH
        f = [tf.random.stateless_uniform([], seeds[3 + i], 1.0 - s, 1.0 + s) for i in range(3)]
        x = tf.clip_by_value(x * f[0], 0.0, 1.0)
        m = tf.reduce_mean(tf.image.rgb_to_grayscale(x) if x.shape[-1] == 3 else x)
        x = tf.clip_by_value((x - m) * f[1] + m, 0.0, 1.0)
        if x.shape[-1] == 3:
            gray = tf.image.rgb_to_grayscale(x)
            x = tf.clip_by_value((x - gray) * f[2] + gray, 0.0, 1.0)
    else:
        if cfg.eval_crop is None:
            if tuple(x.shape[:2]) != (size, size):
                x = tf.image.resize(x, [size, size], method="bilinear", antialias=x.shape[0] > size)
        else:  # the shorter side to size / eval_crop, then a centre crop
            hw = tf.cast(tf.shape(x)[:2], tf.float32)
            short = float(max(size, round(size / cfg.eval_crop)))
            new = tf.maximum(tf.cast(tf.math.round(hw * short / tf.reduce_min(hw)), tf.int32), int(short))
            x = tf.image.resize_with_crop_or_pad(tf.image.resize(x, new, method="bilinear", antialias=True), size, size)
        if train and augment == "flip":
            x = tf.image.stateless_random_flip_left_right(x, tf.random.experimental.stateless_split(seed, 1)[0])
    if cfg.image_channels == 3 and x.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    x = (x - tf.constant(cfg.norm_mean, tf.float32)) / tf.constant(cfg.norm_std, tf.float32)
    return tf.ensure_shape(x, [size, size, cfg.image_channels])


def tf_datasets(cfg: DataConfig) -> dict[str, tf.data.Dataset]:
    """``tf.data`` pipelines for train / val / test (float32 N x H x W x C normalized, int64 N). Train is shuffled
    each epoch and augmented with stateless ops seeded from ``Dataset.random(seed)`` (the same for a given seed), and
    drops its last batch; folders are decoded lazily. Maps run in parallel, deterministic, prefetched."""
    import tensorflow as tf
    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.ensure_shape(img, [None, None, 3]), label

    autotune, out = tf.data.AUTOTUNE, {}
    options = tf.data.Options()
    options.deterministic = True
    for name, split in load_splits(cfg).items():
        if split.images is not None:
            ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        else:
            ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels)).map(decode, num_parallel_calls=autotune)
        if name == "train":
            ds = ds.shuffle(len(split), seed=cfg.seed, reshuffle_each_iteration=True)
            seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda xy, s: (_tf_transform(xy[0], s, cfg, True), xy[1]), num_parallel_calls=autotune)
            ds = ds.batch(cfg.batch_size, drop_remainder=True)
        else:
            ds = ds.map(lambda x, y: (_tf_transform(x, None, cfg, False), y), num_parallel_calls=autotune)
            ds = ds.batch(cfg.eval_batch)
        out[name] = ds.with_options(options).prefetch(autotune)
    return out
