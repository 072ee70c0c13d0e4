"""The seed's encoder–decoder Transformer (models.baselines.transformer_encdec): attention and masks against torch's
scaled_dot_product_attention, causality of the decoder, cross-attention, positions; and the `transformer_encdec`
forecaster against its formula on explicit windows, under the window-model streaming contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import create_model
from models.baselines.informer import circular_conv3
from models.baselines.transformer_encdec import (
    MultiHeadAttention,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    TransformerModel,
    apply_mask,
)
from tests.models.zoo_helpers import D_IN, HORIZON, N_TGT, check_last_window_paths, check_window_steps, tiny_model


def small_transformer(positions: str = "learned", **kw) -> TransformerModel:
    torch.manual_seed(0)
    args = {"d_model": 8, "num_encoder_layers": 2, "num_decoder_layers": 2, "num_heads": 2, "d_ff": 16,
            "dropout": 0.0, "attention_dropout": 0.0, "max_seq_len": 32, "positions": positions, **kw}
    return TransformerModel(**args).double().eval()


def test_attention_is_scaled_dot_product_attention():
    """Our multi-head attention equals torch's SDPA on the same projections: unmasked, causal, and with a bool and a
    float mask (the same conventions: bool True = may attend, float added to the scores)."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).double()
    causal = MultiHeadAttention(8, 2, causal=True).double()
    causal.load_state_dict(attn.state_dict())
    q, kv = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 7, 8, dtype=torch.float64)
    bool_mask = torch.rand(3, 5, 7) > 0.3
    bool_mask[..., 0] = True  # every query keeps a key
    float_mask = torch.randn(3, 5, 7, dtype=torch.float64)

    def heads(t):
        return t.unflatten(-1, (2, 4)).transpose(1, 2)

    def reference(x_q, x_kv, mask=None, is_causal=False):
        Q, K, V = heads(attn.q_proj(x_q)), heads(attn.k_proj(x_kv)), heads(attn.v_proj(x_kv))
        m = None if mask is None else mask.unsqueeze(1)
        y = F.scaled_dot_product_attention(Q, K, V, attn_mask=m, is_causal=is_causal)
        return attn.out_proj(y.transpose(1, 2).flatten(2))

    with torch.no_grad():
        assert torch.allclose(attn(q, kv, kv), reference(q, kv), atol=1e-12)
        assert torch.allclose(attn(q, kv, kv, bool_mask), reference(q, kv, bool_mask), atol=1e-12)
        assert torch.allclose(attn(q, kv, kv, float_mask), reference(q, kv, float_mask), atol=1e-12)
        assert torch.allclose(causal(q, q, q), reference(q, q, is_causal=True), atol=1e-12)
    scores = torch.zeros(1, 1, 2, 2)
    assert torch.equal(apply_mask(scores, torch.tensor([[True, False], [True, True]])),
                       torch.tensor([[[[0.0, float("-inf")], [0.0, 0.0]]]]))
    assert torch.equal(apply_mask(scores, torch.ones(2, 2)), torch.ones(1, 1, 2, 2))


def test_decoder_self_attention_is_causal_and_reads_the_memory():
    model = small_transformer()
    src, tgt = torch.randn(2, 9, 8, dtype=torch.float64), torch.randn(2, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        out = model(src, tgt)
        tgt2 = tgt.clone()
        tgt2[:, 4:] += torch.randn_like(tgt2[:, 4:])  # (a constant shift would vanish in the LayerNorms)
        out2 = model(src, tgt2)
        assert torch.allclose(out2[:, :4], out[:, :4], atol=1e-12)  # positions < 4 never see the change
        assert not torch.allclose(out2[:, 4:], out[:, 4:])
        src2 = src.clone()
        # the encoder is bidirectional within src, and the decoder reads all of the memory
        src2[:, -1] += torch.randn_like(src2[:, -1])
        assert not torch.allclose(model(src2, tgt)[:, 0], out[:, 0])


def test_memory_mask_equals_attending_to_the_kept_memory_only():
    """A bool memory_mask keeping the first 4 of 9 memory positions is cross-attention over memory[:, :4]."""
    torch.manual_seed(0)
    layer = TransformerDecoderLayer(8, num_heads=2, d_ff=16, dropout=0.0, attention_dropout=0.0).double()
    x, memory = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 9, 8, dtype=torch.float64)
    keep = torch.zeros(5, 9, dtype=torch.bool)
    keep[:, :4] = True
    with torch.no_grad():
        assert torch.allclose(layer(x, memory, memory_mask=keep), layer(x, memory[:, :4]), atol=1e-12)
        # a bool tgt_mask narrows the causal self-attention further: position i attends to itself only
        only_self = torch.eye(5, dtype=torch.bool)
        alone = torch.stack([layer(x[:, i : i + 1], memory)[:, 0] for i in range(5)], 1)
        assert torch.allclose(layer(x, memory, tgt_mask=only_self), alone, atol=1e-12)


def test_encoder_layer_mask():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(8, num_heads=2, d_ff=16, dropout=0.0, attention_dropout=0.0).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    block = torch.ones(6, 6, dtype=torch.bool).tril()  # a causal encoder, by mask
    with torch.no_grad():
        y = layer(x, block)
        x2 = x.clone()
        x2[:, 3:] += torch.randn_like(x2[:, 3:])
        assert torch.allclose(layer(x2, block)[:, :3], y[:, :3], atol=1e-12)
        assert not torch.allclose(layer(x2)[:, :3], layer(x)[:, :3])  # unmasked: every position sees all


def test_positions():
    learned, fixed = small_transformer("learned"), small_transformer("sinusoidal")
    assert learned.pos.shape == (32, 8) and "pos" in dict(learned.named_parameters())
    assert "pos" not in fixed.state_dict() and not any(n == "pos" for n, _ in fixed.named_parameters())
    L = torch.arange(32, dtype=torch.float64).unsqueeze(-1)
    freq = torch.exp(torch.arange(0, 8, 2, dtype=torch.float64) * (-torch.log(torch.tensor(1e4)) / 8))
    assert torch.allclose(fixed.pos[:, 0::2], torch.sin(L * freq)) and torch.allclose(fixed.pos[:, 1::2],
                                                                                       torch.cos(L * freq))
    src = torch.randn(1, 5, 8, dtype=torch.float64)
    with torch.no_grad():  # positions matter: a permuted source is not a permuted output of the encoder
        assert not torch.allclose(fixed.encode(src.flip(1)).flip(1), fixed.encode(src), atol=1e-6)
    with pytest.raises(ValueError, match="max_seq_len"):
        learned(torch.randn(1, 33, 8, dtype=torch.float64), torch.randn(1, 2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="positions"):
        TransformerModel(8, positions="rotary")


def test_forecast_is_the_formula_on_explicit_windows():
    """ŷ = P·TransformerModel(E_enc(w), E_dec([last ℓ of w; 0_H]))_{ℓ+1 … ℓ+H} + p, and forward at t ≥ W−1 is it on
    the window ending at t."""
    model = tiny_model("transformer_encdec", window=12, label_len=5)
    c = model.config
    assert (c.label_len, c.d_layers, c.max_seq_len) == (5, c.n_layers, 12)  # max(W, ℓ + H) = max(12, 9)
    x = torch.randn(2, 20, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        for t in (11, 15, 19):
            w = x[:, t - 11 : t + 1]  # (B, W, D)
            target = torch.cat([w[:, -5:], torch.zeros(2, HORIZON, D_IN, dtype=torch.float64)], 1)
            g = model.transformer(circular_conv3(w, model.enc_embed), circular_conv3(target, model.dec_embed))
            expected = model.proj(g[:, 5:])  # (B, H, K)
            assert torch.allclose(y[:, t], expected, atol=1e-12)
    assert y.shape == (2, 20, HORIZON, N_TGT)


def test_window_streaming_paths():
    model = tiny_model("transformer_encdec", window=10)
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (9, D_IN))]
    check_window_steps(model, torch.float64, 1e-10, L=25)
    check_last_window_paths(model)


def test_label_len_zero_and_learned_positions():
    model = tiny_model("transformer_encdec", window=8, label_len=0, positions="learned", max_seq_len=16)
    assert model.transformer.pos.shape == (16, model.config.d_model)
    check_window_steps(model, torch.float64, 1e-10, L=12)


@pytest.mark.parametrize("fields,match", [
    ({"d_model": 10, "n_heads": 4}, "multiple of n_heads"),
    ({"window": 8, "max_seq_len": 4}, "max_seq_len"),
    ({"window": 8, "label_len": 9}, "label_len"),
    ({"positions": "rotary"}, "positions"),
    ({"attention_dropout": 1.0}, "attention_dropout"),
    ({"window": 1}, "window"),
    ({"d_layers": 0}, "d_layers"),
])
def test_bad_config_is_rejected_clearly(fields, match):
    with pytest.raises(ValueError, match=match):
        create_model("transformer_encdec", **fields)


def test_seed_names_and_defaults():
    """The seed's keywords reach the forecaster's fields; num_layers sets the encoder and (by default) the decoder."""
    m = create_model(architecture="transformer", d_model=16, num_layers=3, num_heads=4,
                     architecture_kwargs={"d_ff": None, "attention_dropout": 0.2})
    c = m.config
    assert (c.n_layers, c.d_layers, c.n_heads, c.d_ff, c.attention_dropout, c.dropout) == (3, 3, 4, 64, 0.2, 0.1)
    assert m.transformer.decoder_layers[0].cross_attn.dropout.p == 0.2 and m.transformer.dropout.p == 0.1
    m = create_model(architecture="transformer", d_model=16, num_encoder_layers=2, num_decoder_layers=1)
    assert (len(m.transformer.encoder_layers), len(m.transformer.decoder_layers)) == (2, 1)
