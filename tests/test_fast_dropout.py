"""CPU dropout with cheap masks: its law, its gradient, and its use while a model trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from paretune.kernels import fast_dropout
from paretune.kernels.reference import lora_linear
from paretune.trainers import cpu_dropout
from paretune.trainers.cpu_dropout import ATTENTION_NAME, FastDropout, fast_cpu_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_keeps_each_element_with_probability_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    keep = fast_dropout.keep_mask((1000, 1000), p)
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    # 1e6 draws: the standard error of the rate is under 5e-4
    assert abs(keep.float().mean().item() - (1 - p)) < 3e-3
    # neighbours (the four 16-bit slices of one random word) are not correlated
    a, b = keep.flatten()[0::4].float(), keep.flatten()[1::4].float()
    assert abs(((a - a.mean()) * (b - b.mean())).mean().item()) < 2e-3
    assert fast_dropout.quantised_p(p) == pytest.approx(p, abs=1 / 65536)


def splitmix64(state: int, count: int) -> list[int]:
    """SplitMix64 as published, in Python integers."""
    mask, out = (1 << 64) - 1, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def test_the_words_are_splitmix64_from_a_start_drawn_from_the_generator() -> None:
    words = fast_dropout.random_words(1000, generator=torch.Generator().manual_seed(5))
    start = torch.randint(
        -(2**63), 2**63 - 1, (1,), dtype=torch.int64, generator=torch.Generator().manual_seed(5)
    )
    want = splitmix64(start.item() & ((1 << 64) - 1), 1000)
    assert [w & ((1 << 64) - 1) for w in words.tolist()] == want


def test_every_bit_of_the_uniforms_is_a_fair_coin() -> None:
    """A wrong shift or multiply in the hash shows as biased bits long before it shows in a rate."""
    words = fast_dropout.random_words(1_000_000, generator=torch.Generator().manual_seed(3))
    slices = words.view(torch.int16).to(torch.int32) & 0xFFFF
    for bit in range(16):
        ones = ((slices >> bit) & 1).float().mean().item()
        assert abs(ones - 0.5) < 2e-3, (bit, ones)  # 4e6 draws: standard error 2.5e-4
    # consecutive words are not correlated either (1e6 pairs: standard error 1e-3)
    a, b = slices[0:-4:4].float(), slices[4::4].float()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 5e-3


def test_dropout_applies_keep_mask_for_the_same_generator_state() -> None:
    x = torch.ones(300, 7)
    keep = fast_dropout.keep_mask(x.shape, 0.4, generator=torch.Generator().manual_seed(9))
    y = fast_dropout.dropout(x, 0.4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(y != 0, keep)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_scale_is_exact_in_each_dtype(dtype: torch.dtype) -> None:
    """bf16 cannot hold 1 / (1 - p): the kept values must be x scaled as F.dropout scales them."""
    x = (torch.rand(256, 64) + 0.5).to(dtype).requires_grad_(True)
    y = fast_dropout.dropout(x, 0.1, generator=torch.Generator().manual_seed(4))
    assert y.dtype == dtype
    kept = y != 0
    scale = 1 / (1 - fast_dropout.quantised_p(0.1))
    assert torch.equal(y[kept], x.detach()[kept].mul(scale))  # one rounding, of the true product
    g = torch.randn(256, 64).to(dtype)
    y.backward(g)
    assert torch.equal(x.grad, (g * kept).mul_(scale))


def test_threads_draw_their_own_masks() -> None:
    """The word buffers are per thread: concurrent draws do not overwrite each other's."""
    from concurrent.futures import ThreadPoolExecutor

    def draw(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return fast_dropout.dropout(torch.ones(200_000), 0.5, generator=g)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(draw, [1, 2, 3, 4] * 4))
    for seed, value in zip([1, 2, 3, 4] * 4, got, strict=True):
        assert torch.equal(value, draw(seed))


def test_masks_beyond_the_scratch_limit_are_the_same_and_not_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.ones(4000)
    want = fast_dropout.dropout(x, 0.3, generator=torch.Generator().manual_seed(2))
    fast_dropout._SCRATCH.words.clear()
    monkeypatch.setattr(fast_dropout, "SCRATCH_MAX_WORDS", 100)  # 4000 elements: 1000 words
    got = fast_dropout.dropout(x, 0.3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(got, want)
    assert not fast_dropout._SCRATCH.words  # nothing kept for the thread


def test_dropout_preserves_the_mean_and_its_gradient_is_the_mask() -> None:
    torch.manual_seed(1)
    x = torch.rand(512, 512) + 0.5  # no zeros, so the output's zeros are the dropped elements
    x.requires_grad_(True)
    y = fast_dropout.dropout(x, 0.3)
    kept = y != 0
    scale = 1 / (1 - fast_dropout.quantised_p(0.3))
    torch.testing.assert_close(y[kept], x.detach()[kept] * scale)
    assert y.detach().sum() / x.detach().sum() == pytest.approx(1.0, abs=0.01)
    g = torch.randn_like(x)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * kept * scale)


def test_seeded_masks_are_a_function_of_the_seed() -> None:
    x = torch.ones(64, 64)
    a, b = fast_dropout.seeded_dropout(x, 0.5, 7), fast_dropout.seeded_dropout(x, 0.5, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, fast_dropout.seeded_dropout(x, 0.5, 8))
    assert fast_dropout.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        fast_dropout.dropout(x, 1.0)


def test_lora_reference_mask_choice() -> None:
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(40, 16, generator=g), torch.randn(8, 16, generator=g)
    a, b = torch.randn(4, 16, generator=g), torch.randn(8, 4, generator=g)
    none = lora_linear(x, w, None, a, b, 1.0, dropout_p=0.0)
    fast = lora_linear(x, w, None, a, b, 1.0, dropout_p=0.5, seed=3, masks="fast")
    philox = lora_linear(x, w, None, a, b, 1.0, dropout_p=0.5, seed=3, masks="philox")
    assert not torch.equal(fast, none) and not torch.equal(fast, philox)
    torch.testing.assert_close(fast, lora_linear(x, w, None, a, b, 1.0, 0.5, 3, masks="fast"))
    with pytest.raises(ValueError, match="masks must be"):
        lora_linear(x, w, None, a, b, 1.0, dropout_p=0.5, seed=3, masks="mt")


def tiny_bert(dropout: float) -> nn.Module:
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def padded_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 100, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding, so the attention mask matters
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_training_forward_draws_no_bernoulli_masks() -> None:
    model = tiny_bert(0.1).train()
    with fast_cpu_dropout(model):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(**padded_batch()).logits.sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert "aten::bernoulli_" not in names
    assert "aten::bitwise_xor_" in names  # the masks were hashed, the fast way
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model(**padded_batch())
    assert "aten::bernoulli_" in {e.key for e in prof.key_averages()}  # restored on exit


def test_the_attention_math_path_equals_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the masks made all-ones, the training path computes exactly what sdpa computes."""
    model = tiny_bert(0.1).train()
    for layer in model.bert.encoder.layer:
        layer.output.dropout.p = 0.0
        layer.attention.output.dropout.p = 0.0
    model.bert.embeddings.dropout.p = 0.0
    model.dropout.p = 0.0  # hidden dropout off; attention dropout stays 0.1
    used = []

    def no_drop(x: torch.Tensor, p: float, **_: object) -> torch.Tensor:
        used.append(p)
        return x

    monkeypatch.setattr(cpu_dropout.fast_dropout, "dropout", no_drop)
    with fast_cpu_dropout(model):
        got = model(**padded_batch()).logits
    assert used == [0.1, 0.1]  # both layers took the math path
    model.eval()  # sdpa without dropout: the reference
    want = model(**padded_batch()).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_swap_is_undone_and_changes_no_names_or_eval_outputs() -> None:
    model = tiny_bert(0.1)
    names = list(model.state_dict())
    model.eval()
    before = model(**padded_batch()).logits
    with fast_cpu_dropout(model):
        assert model.config._attn_implementation == ATTENTION_NAME
        assert any(type(m) is FastDropout for m in model.modules())
        assert list(model.state_dict()) == names
        torch.testing.assert_close(model(**padded_batch()).logits, before)
    assert model.config._attn_implementation == "sdpa"
    assert not any(type(m) is FastDropout for m in model.modules())


def test_eval_mode_attention_inside_training_takes_the_math_path() -> None:
    """The frozen prefix and the evaluations run in eval mode inside ``train()``: there the math
    path is faster than sdpa's CPU flash kernel, and computes the same attention."""
    model = tiny_bert(0.1).eval()
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        want = model(**padded_batch()).logits
    assert flash in {e.key for e in prof.key_averages()}  # sdpa outside the block
    with fast_cpu_dropout(model):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            got = model(**padded_batch()).logits
    names = {e.key for e in prof.key_averages()}
    assert flash not in names and "aten::_softmax" in names
    torch.testing.assert_close(got, want)


def test_long_eval_mode_attention_keeps_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond EVAL_MATH_MAX_KEYS key tokens sdpa's flash kernel is faster: calls go there."""
    monkeypatch.setattr(cpu_dropout, "EVAL_MATH_MAX_KEYS", 5)  # the batch is 10 tokens wide
    model = tiny_bert(0.1).eval()
    with fast_cpu_dropout(model):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(**padded_batch())
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in {
        e.key for e in prof.key_averages()
    }
