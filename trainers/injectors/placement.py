"""Where paretune's own modules go in a model that peft may already have wrapped.

Module paths of the architecture table are relative to the transformers model. peft wraps that
model (``PeftModel``) and replaces adapted projections by tuner layers that keep the original
under ``base_layer``; these helpers see through both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def hf_model(model: nn.Module) -> nn.Module:
    """The transformers model under any number of peft wrappers."""
    from peft import PeftModel  # noqa: PLC0415

    while isinstance(model, PeftModel):
        model = model.get_base_model()
    return model


def module_slot(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    """(parent, attribute) of the module at ``path`` under ``root``."""
    head, _, attr = path.rpartition(".")
    return (root.get_submodule(head) if head else root), attr


@contextmanager
def swapped(parent: nn.Module, attr: str, module: nn.Module) -> Iterator[None]:
    """``module`` stands in for ``parent.attr`` within the block (no hooks moved, nothing kept)."""
    original = parent._modules[attr]
    parent._modules[attr] = module
    try:
        yield
    finally:
        parent._modules[attr] = original


def projection_slot(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    """(parent, attribute) holding the projection itself: under a peft tuner layer, its base layer."""
    parent, attr = module_slot(root, path)
    module = getattr(parent, attr)
    while hasattr(module, "base_layer"):  # peft's BaseTunerLayer
        parent, attr, module = module, "base_layer", module.base_layer
    return parent, attr


def projection(root: nn.Module, path: str) -> nn.Module:
    parent, attr = projection_slot(root, path)
    return getattr(parent, attr)


def replace_module(parent: nn.Module, attr: str, new: nn.Module) -> None:
    """Put ``new`` in place of ``parent.attr``, keeping the hooks other families attached there."""
    old = getattr(parent, attr)
    new._forward_pre_hooks.update(old._forward_pre_hooks)
    new._forward_hooks.update(old._forward_hooks)
    setattr(parent, attr, new)


@contextmanager
def keep_trainable(model: nn.Module) -> Iterator[None]:
    """Restore ``requires_grad`` of what trains now after a step that freezes the whole model."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
