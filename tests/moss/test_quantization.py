"""Weight-only int8 loading through transformers' torchao integration (skipped without torchao).

The backbone's linear layers become int8 (per-channel scales); embeddings and output heads stay in the load dtype —
transformers keeps the output embeddings and the last module, and torchao only converts ``nn.Linear`` — except the
Local generator's audio heads, which the recipe names in ``modules_to_not_convert``.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codectts.conversion import convert_checkpoint
from codectts.modeling.moss.delay import CodecTTSDelayForConditionalGeneration
from codectts.modeling.moss.local import CodecTTSLocalForConditionalGeneration

torchao = pytest.importorskip("torchao")
from torchao.quantization import Int8WeightOnlyConfig
from transformers import TorchAoConfig

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
GREEDY = {"do_sample": False, "audio_do_sample": False}
FAMILIES = {
    "delay": (CodecTTSDelayForConditionalGeneration, "moss_tts_delay", "outputs_eager", None),
    "local": (CodecTTSLocalForConditionalGeneration, "moss_tts_local", "outputs_sdpa", ["lm_heads"]),
}


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a tensor, of the inner tensors for a tensor subclass (torchao's quantized weights)."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_int8_weight_only_loading(family, tmp_path):
    model_class, folder, outputs, skip = FAMILIES[family]
    convert_checkpoint(GOLDEN / folder / "model", tmp_path / "converted")
    full = model_class.from_pretrained(tmp_path / "converted").eval()
    quantized = model_class.from_pretrained(
        tmp_path / "converted",
        quantization_config=TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=skip),
    ).eval()

    converted, kept = {}, {}
    for (name, module), (_, full_module) in zip(quantized.named_modules(), full.named_modules(), strict=True):
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            weight = module.weight
            target = converted if type(weight) is not torch.nn.Parameter else kept
            target[name] = (tensor_bytes(weight), full_module.weight)
    assert any(".layers." in name for name in converted)  # the backbone is int8 ...
    heads = [name for name in kept if "lm_head" in name]
    embeddings = [name for name in kept if "embed" in name]
    assert heads and embeddings and not any("lm_head" in name or "embed" in name for name in converted)  # ... not these
    for name, (stored, weight) in converted.items():  # one byte per weight + a few bytes (scale) per output channel
        assert stored <= weight.numel() + 8 * weight.shape[0], name

    data = load_file(GOLDEN / folder / f"{outputs}.safetensors")
    ids, mask = data["prompt_B.input_ids"], data["prompt_B.attention_mask"].long()
    with torch.no_grad():  # the text logits of every prompt row: int8 noise is small against their spread
        want = full(input_ids=ids, attention_mask=mask).logits
        got = quantized(input_ids=ids, attention_mask=mask).logits
        assert (got - want).abs().mean() < 0.05 * want.std()
        first_want = full.generate(ids, attention_mask=mask, max_new_tokens=2, **GREEDY)
        first_got = quantized.generate(ids, attention_mask=mask, max_new_tokens=2, **GREEDY)
    # the first generated text token; codes of tiny random heads are near-ties (agreement: benchmarks/README.md)
    assert torch.equal(first_got[:, ids.shape[1], 0], first_want[:, ids.shape[1], 0])


@pytest.mark.parametrize("recipe", ["linear layers", "everything"])
def test_delay_with_a_quantized_text_head_keeps_the_shortcut_exact(recipe, tmp_path):
    """The text head in int8 too: the decode step computes only the allowed rows of the int8 head (int8 rows and
    their scales gathered first) and gives the same tokens and scores as the whole-head path."""
    from codectts.modeling.quantization import int8_weight_only_config

    convert_checkpoint(GOLDEN / "moss_tts_delay" / "model", tmp_path / "converted")
    if recipe == "everything":
        config = CodecTTSDelayForConditionalGeneration.config_class.from_pretrained(tmp_path / "converted")
        quantization = int8_weight_only_config(config)
    else:
        quantization = TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=[])
    model = CodecTTSDelayForConditionalGeneration.from_pretrained(
        tmp_path / "converted", quantization_config=quantization
    ).eval()
    assert type(model.lm_head.weight) is not torch.nn.Parameter
    assert (type(model.audio_embed_tokens.weight) is torch.nn.Parameter) == (recipe != "everything")
    data = load_file(GOLDEN / "moss_tts_delay" / "outputs_eager.safetensors")
    ids, mask = data["prompt_AC.input_ids"], data["prompt_AC.attention_mask"].long()
    common = {"max_new_tokens": 20, "return_dict_in_generate": True, "output_scores": True, **GREEDY}
    with torch.no_grad():
        plain = model.generate(ids, attention_mask=mask, output_logits=True, **common)  # raw logits: no shortcut
        fast = model.generate(ids, attention_mask=mask, **common)
    assert torch.equal(fast.sequences, plain.sequences)
    for fast_scores, plain_scores in zip(fast.scores, plain.scores, strict=True):
        assert torch.equal(fast_scores, plain_scores)


def _sized_model(family: str):
    """A model wide enough (hidden 128) for the per-row scales to be small next to the int8 weights."""
    from codectts.configuration.moss.delay import CodecTTSDelayConfig
    from codectts.configuration.moss.local import CodecTTSLocalConfig

    text = dict(vocab_size=2048, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32)  # fmt: skip
    audio = dict(n_vq=4, audio_vocab_size=128)
    if family == "delay":
        return CodecTTSDelayForConditionalGeneration(CodecTTSDelayConfig(text_config=text, **audio))
    sizes = dict(local_hidden_size=128, local_num_layers=2, local_intermediate_size=256, adapter_intermediate_size=128)
    config = CodecTTSLocalConfig(text_config=text, pad_token_id=0, **sizes, **audio)
    return CodecTTSLocalForConditionalGeneration(config)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("keep", [(), ("heads",), ("embeddings",)])
def test_int8_weight_only_config_covers_embeddings_and_heads(family, keep, tmp_path):
    """int8_weight_only_config: every linear layer and embedding table in int8 (<= 0.3x the float32 weight bytes),
    or all but the heads / the embeddings when asked."""
    from codectts.modeling.quantization import int8_weight_only_config

    torch.manual_seed(0)
    _sized_model(family).save_pretrained(tmp_path)
    model_class = FAMILIES[family][0]
    full = model_class.from_pretrained(tmp_path)
    options = {name: False for name in keep}
    quantized = model_class.from_pretrained(
        tmp_path, quantization_config=int8_weight_only_config(full.config, **options)
    )
    float_modules, int8_modules = [], []
    for name, module in quantized.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            (float_modules if type(module.weight) is torch.nn.Parameter else int8_modules).append((name, module))
    is_head = lambda name, module: isinstance(module, torch.nn.Linear) and "lm_head" in name  # noqa: E731
    is_embedding = lambda name, module: isinstance(module, torch.nn.Embedding)  # noqa: E731
    expected_float = {"heads": is_head, "embeddings": is_embedding}
    for name, module in float_modules:
        assert any(expected_float[k](name, module) for k in keep), f"{name} was left in float32"
    for name, module in int8_modules:
        assert not any(expected_float[k](name, module) for k in keep), f"{name} was quantized"
    for k in keep:
        assert any(expected_float[k](*item) for item in float_modules)
    total = lambda model: sum(tensor_bytes(p) for p in model.parameters())  # noqa: E731
    if not keep:
        assert total(quantized) <= 0.3 * total(full)
    ids = torch.randint(0, 8, (1, 6, 1 + full.config.n_vq))
    ids[..., 1:] = full.config.audio_pad_code if family == "delay" else torch.randint(0, 128, (1, 6, 4))
    with torch.no_grad():  # int8 noise is small against the logits' spread
        want, got = full(input_ids=ids).logits, quantized(input_ids=ids).logits
    assert (got - want).abs().mean() < 0.05 * want.std()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_int8_everything_keeps_the_golden_first_token(family, tmp_path):
    from codectts.modeling.quantization import int8_weight_only_config

    model_class, folder, outputs, _ = FAMILIES[family]
    convert_checkpoint(GOLDEN / folder / "model", tmp_path / "converted")
    full = model_class.from_pretrained(tmp_path / "converted").eval()
    quantized = model_class.from_pretrained(
        tmp_path / "converted", quantization_config=int8_weight_only_config(full.config)
    ).eval()
    assert all(
        type(m.weight) is not torch.nn.Parameter
        for m in quantized.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))
    )
    data = load_file(GOLDEN / folder / f"{outputs}.safetensors")
    ids, mask = data["prompt_B.input_ids"], data["prompt_B.attention_mask"].long()
    with torch.no_grad():
        first_want = full.generate(ids, attention_mask=mask, max_new_tokens=2, **GREEDY)
        first_got = quantized.generate(ids, attention_mask=mask, max_new_tokens=2, **GREEDY)
    assert torch.equal(first_got[:, ids.shape[1], 0], first_want[:, ids.shape[1], 0])


def test_int8_lookups_gather_rows_before_dequantising(monkeypatch):
    """embedding_lookup / linear_rows give exactly what the int8 modules give, dequantising only the rows asked for
    (torchao's own embedding dequantises the whole table at every lookup)."""
    from torchao.quantization import quantize_

    from codectts.modeling.quantization import embedding_lookup, linear_rows

    torch.manual_seed(0)
    table, head = torch.nn.Embedding(3000, 32), torch.nn.Linear(32, 3000, bias=False)
    quantize_(table, Int8WeightOnlyConfig(), filter_fn=lambda module, name: True)
    quantize_(head, Int8WeightOnlyConfig())
    ids, hidden, rows = torch.randint(0, 3000, (2, 5, 3)), torch.randn(2, 4, 32), torch.arange(64, 96)
    with torch.no_grad():
        want_rows, want_embedding = head(hidden)[..., rows], table(ids)
        kind = type(table.weight)
        shapes, dequantize = [], kind.dequantize
        monkeypatch.setattr(
            kind, "dequantize", lambda self, *a, **k: shapes.append(tuple(self.shape)) or dequantize(self, *a, **k)
        )
        assert torch.equal(embedding_lookup(table, ids), want_embedding)
        assert torch.equal(linear_rows(head, hidden, rows), want_rows)
    assert shapes == [(ids.numel(), 32)]


def test_int8_weight_only_config_for_another_model_class(tmp_path):
    """Module names follow the class loaded: the backbone-only Local model has no ``model.`` prefix and no heads."""
    from codectts.modeling.moss.local import CodecTTSLocalModel
    from codectts.modeling.quantization import int8_weight_only_config

    torch.manual_seed(0)
    _sized_model("local").save_pretrained(tmp_path)
    config = CodecTTSLocalForConditionalGeneration.config_class.from_pretrained(tmp_path)
    backbone = CodecTTSLocalModel.from_pretrained(
        tmp_path, quantization_config=int8_weight_only_config(config, model_class=CodecTTSLocalModel)
    )
    layers = [m for m in backbone.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))]
    assert layers and all(type(m.weight) is not torch.nn.Parameter for m in layers)
