"""The settings' data: datasets (`datasets`, read directly or through continuum), their split into
tasks as tensors (`streams`), training augmentation, and caches of decoded images."""
