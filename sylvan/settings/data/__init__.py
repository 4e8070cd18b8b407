"""The settings' data: datasets (`datasets`, read directly or through continuum), their split into
tasks as tensors (`streams`), training augmentation, and caches of decoded images."""

from sylvan.settings.data import lazy_continuum

# Before anything imports continuum: its packages then import a module at a time, as used.
lazy_continuum.install()
