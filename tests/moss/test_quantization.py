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


def test_delay_with_a_quantized_text_head_keeps_the_shortcut_exact(tmp_path):
    """Everything int8, the text head included: the row-subset decode step falls back to the whole (quantized) head."""
    convert_checkpoint(GOLDEN / "moss_tts_delay" / "model", tmp_path / "converted")
    model = CodecTTSDelayForConditionalGeneration.from_pretrained(
        tmp_path / "converted", quantization_config=TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=[])
    ).eval()
    assert type(model.lm_head.weight) is not torch.nn.Parameter
    data = load_file(GOLDEN / "moss_tts_delay" / "outputs_eager.safetensors")
    ids, mask = data["prompt_AC.input_ids"], data["prompt_AC.attention_mask"].long()
    common = {"max_new_tokens": 20, "return_dict_in_generate": True, "output_scores": True, **GREEDY}
    with torch.no_grad():
        plain = model.generate(ids, attention_mask=mask, output_logits=True, **common)  # raw logits: no shortcut
        fast = model.generate(ids, attention_mask=mask, **common)
    assert torch.equal(fast.sequences, plain.sequences)
    for fast_scores, plain_scores in zip(fast.scores, plain.scores, strict=True):
        assert torch.equal(fast_scores, plain_scores)
