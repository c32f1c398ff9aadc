"""The last block computes the first token only: the classification head reads nothing else.

BERT and RoBERTa sequence classifiers read the last block's output at position 0 alone
(``BertPooler``, ``RobertaClassificationHead``). In that block the keys and values still need
every token, but the queries, the attention output projection, the feed-forward layers and
their norms need only the first: for the other tokens a plain forward computes outputs the head
throws away, and the backward pushes zeros through them. ``FirstTokenBlock`` runs the last block
that way. For MiniLM-L6 that is 10 of the last block's 12 hidden-size-squared products per
token, about 14 % of the model's matrix arithmetic.

Exact: logits and every gradient equal the plain path's (eval mode; in training the last
block's dropout draws masks for the first token only, the same law). Adapters inside the block
keep working because the block's own submodules are called (LoRA, PaCA and IA3 replace them,
serial and parallel adapters hook them); calls that bring a key-value cache (prefix tuning) or
cross-attention go to the block unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims

from .injectors.placement import hf_model, module_slot, swapped

# the classification heads known to read position 0 of the last hidden state only
FIRST_TOKEN_HEADS = ("BertForSequenceClassification", "RobertaForSequenceClassification")


def _block_fits(block: nn.Module) -> bool:
    attention = getattr(block, "attention", None)
    core = getattr(attention, "self", None)
    needed = ("query", "key", "value", "attention_head_size", "scaling", "config", "dropout")
    return (
        core is not None
        and all(hasattr(core, name) for name in needed)
        and hasattr(attention, "output")
        and hasattr(block, "feed_forward_chunk")
        and not getattr(block, "is_decoder", False)
    )


def supports_first_token(model: nn.Module, dims: ModelDims) -> bool:
    """The model's head reads only position 0 and its last block has the expected parts."""
    if dims.arch != "bert" or type(hf_model(model)).__name__ not in FIRST_TOKEN_HEADS:
        return False
    blocks = hf_model(model).get_submodule(dims.block_path)
    return len(blocks) > 0 and _block_fits(blocks[-1])


def _attention_function(core: nn.Module) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: PLC0415
    from transformers.models.bert.modeling_bert import eager_attention_forward  # noqa: PLC0415

    return ALL_ATTENTION_FUNCTIONS.get_interface(
        core.config._attn_implementation, eager_attention_forward
    )


class FirstTokenBlock(nn.Module):
    """Runs a BERT-family block for the first token's output only (see the module doc).

    The block is held, not registered, so the model's parameter names never change while this
    stands in for it inside a forward pass.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.__dict__["block"] = block
        self.training = block.training

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        block: nn.Module = self.__dict__["block"]
        if encoder_hidden_states is not None or args or kwargs.get("past_key_values") is not None:
            return block(hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
        kwargs.pop("past_key_values", None)
        kwargs.pop("encoder_attention_mask", None)
        core = block.attention.self
        batch, length = hidden_states.shape[:2]
        first = hidden_states[:, :1]
        size = core.attention_head_size  # [b, tokens, hidden] -> [b, heads, tokens, size]
        query = core.query(first).view(batch, 1, -1, size).transpose(1, 2)
        key = core.key(hidden_states).view(batch, length, -1, size).transpose(1, 2)
        value = core.value(hidden_states).view(batch, length, -1, size).transpose(1, 2)
        mask = attention_mask
        if mask is not None and mask.dim() == 4 and mask.shape[-2] > 1:
            mask = mask[:, :, :1, :]  # the first query's row of a [b, 1, q, k] mask
        context, _ = _attention_function(core)(
            core,
            query,
            key,
            value,
            mask,
            dropout=core.dropout.p if core.training else 0.0,
            scaling=core.scaling,
            **kwargs,
        )
        context = context.reshape(batch, 1, -1).contiguous()
        attended = block.attention.output(context, first)
        return block.feed_forward_chunk(attended)


def first_token_blocks(blocks: list[nn.Module]) -> list[nn.Module]:
    """``blocks`` with the last one computing its first token only."""
    return [*blocks[:-1], FirstTokenBlock(blocks[-1])] if blocks else blocks


class FirstTokenRunner:
    """Logits of the whole model with the last block on its first token (no frozen prefix)."""

    def __init__(self, model: nn.Module, dims: ModelDims) -> None:
        self.model = model
        self._parent, self._attr = module_slot(hf_model(model), dims.block_path)

    def logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        examples: list[int] | None = None,
        split: str = "train",
    ) -> torch.Tensor:
        blocks = list(getattr(self._parent, self._attr))
        with swapped(self._parent, self._attr, nn.ModuleList(first_token_blocks(blocks))):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
