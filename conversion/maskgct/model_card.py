"""Model card (``README.md``) of a converted MaskGCT folder, from ``hub_cards/maskgct.md``.

The weights of the official release are CC-BY-NC-4.0: the card says so in its metadata and text.
"""

from __future__ import annotations

import string
from importlib import resources
from typing import Any

LICENSE = "cc-by-nc-4.0"
TAGS = ["codectts", "text-to-speech", "audio", "voice-cloning", "maskgct", "non-autoregressive", "masked-generative"]


def _facts(config: dict[str, Any]) -> str:
    t2s, s2a = config["t2s_config"], config["s2a_full_config"]
    codec, semantic = config["acoustic_codec_config"], config["semantic_codec_config"]
    rows = [
        ("output sampling rate (Hz)", codec.get("sampling_rate", 24000)),
        ("token frame rate (Hz)", config.get("frame_rate", 50)),
        ("semantic vocabulary", semantic["codebook_size"]),
        ("acoustic RVQ layers x codebook", f"{codec['num_quantizers']} x {codec['codebook_size']}"),
        ("T2S hidden size / layers / heads", f"{t2s['hidden_size']} / {t2s['num_layers']} / {t2s['num_heads']}"),
        ("S2A hidden size / layers / heads", f"{s2a['hidden_size']} / {s2a['num_layers']} / {s2a['num_heads']}"),
        ("w2v-bert layer used", config.get("semantic_layer", 17)),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def render_maskgct_card(
    *,
    repo_id: str,
    config: dict[str, Any],
    base_model: str | None = "amphion/MaskGCT",
    languages: list[str] | None = None,
    model_name: str | None = None,
) -> str:
    """The README.md text for a MaskGCT folder whose ``config.json`` content is ``config``."""
    from huggingface_hub import ModelCardData

    metadata = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-to-speech",
        license=LICENSE,
        language=languages or ["en", "fr", "de", "ko"],
        tags=TAGS,
        base_model=base_model,
    )
    q = config["s2a_full_config"]["num_quantizer"]
    template = resources.files("codectts.hub_cards").joinpath("maskgct.md").read_text(encoding="utf-8")
    body = string.Template(template).substitute(
        repo_id=repo_id,
        model_name=model_name or repo_id.rstrip("/").split("/")[-1],
        origin=f"Converted from [`{base_model}`](https://huggingface.co/{base_model})." if base_model else "",
        facts=_facts(config),
        s2a_steps=str(([25, 10] + [1] * q)[:q]),
    )
    return f"---\n{metadata.to_yaml()}\n---\n\n{body.strip()}\n"
