"""T2S / S2A parity with the original: estimator forwards, training forwards (seeded draws), every recorded
mask-predict run (noise-free and seeded), the chained S2A, gt_codes, max_layer, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden" / "maskgct"


def outputs(name):
    return load_file(str(GOLDEN / f"outputs_{name}.safetensors"))


def recipes(name):
    return json.loads((GOLDEN / "recipes.json").read_text())[name]["recipes"]


def load_generators(folder, attn_implementation):
    return {
        name: AutoModel.from_pretrained(str(folder / name), attn_implementation=attn_implementation).eval()
        for name in ("t2s", "s2a_1layer", "s2a_full")
    }


@pytest.fixture(scope="module")
def models(converted):
    return load_generators(converted, "sdpa")


def decoding_args(args, noise_free):
    return {
        "cfg": args["cfg"],
        "rescale_cfg": args["rescale_cfg"],
        "temperature": args["temp"],
        "filter_thres": args["filter_thres"],
        "do_sample": not noise_free,
    }


@torch.no_grad()
def test_t2s_estimator(models):
    t2s, o = models["t2s"], outputs("t2s")
    phones = t2s.phone_emb(o["in.est.phone_id"])
    mask = torch.cat([o["in.est.phone_mask"].float(), o["in.est.x_mask"]], 1)
    out = t2s.diff_estimator(o["in.est.x"], o["in.est.t"], cond=phones, attention_mask=mask)
    torch.testing.assert_close(out, o["est.out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(t2s.to_logit(out), o["est.logits"], atol=1e-4, rtol=0)
    out = t2s.diff_estimator(o["in.est.x"], o["in.est.t"], attention_mask=o["in.est.x_mask"])
    torch.testing.assert_close(out, o["est_nophone.out"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg_batching", [True, False])
def test_t2s_generate_every_recorded_run(models, cfg_batching):
    t2s, o = models["t2s"], outputs("t2s")
    runs = [r for r in recipes("t2s") if r["call"] == "MaskGCT_T2S.reverse_diffusion"]
    assert len(runs) == 8
    for r in runs:
        a = r["args"]
        torch.manual_seed(r["seed"])
        seq = t2s.generate(
            prompt_ids=o[a["prompt"]],
            phone_ids=o[a["phone_id"]],
            target_len=a["target_len"],
            n_timesteps=a["n_timesteps"],
            cfg_batching=cfg_batching,
            **decoding_args(a, r["noise_free"]),
        )
        assert seq.dtype == torch.long and seq.shape == o[r["name"] + ".seq"].shape
        assert torch.equal(seq, o[r["name"] + ".seq"]), r["name"]


def test_t2s_seeded_generator_matches_global_seed(models):
    t2s, o = models["t2s"], outputs("t2s")
    r = next(r for r in recipes("t2s") if r["name"] == "gen_sampled_cfg")
    a = r["args"]
    seq = t2s.generate(
        prompt_ids=o[a["prompt"]],
        phone_ids=o[a["phone_id"]],
        target_len=a["target_len"],
        n_timesteps=a["n_timesteps"],
        generator=torch.Generator().manual_seed(r["seed"]),
        **decoding_args(a, False),
    )
    assert torch.equal(seq, o["gen_sampled_cfg.seq"])


@pytest.mark.parametrize("name", ["fwd", "fwd_noprompt"])
def test_t2s_training_forward(models, name):
    t2s, o = models["t2s"], outputs("t2s")
    r = next(r for r in recipes("t2s") if r["name"] == name)
    torch.manual_seed(r["seed"])
    with torch.no_grad():
        out = t2s(o["in.fwd.x0"], o["in.fwd.x_mask"], phone_id=o["in.est.phone_id"], phone_mask=o["in.est.phone_mask"])
    assert torch.equal(out.prompt_len, o[name + ".prompt_len"])
    torch.testing.assert_close(out.mask_prob, o[name + ".mask_prob"], atol=1e-6, rtol=0)
    assert torch.equal(out.final_mask, o[name + ".final_mask"])
    torch.testing.assert_close(out.logits, o[name + ".logits"], atol=1e-4, rtol=0)
    assert torch.isfinite(out.loss) and out.loss > 0


@torch.no_grad()
@pytest.mark.parametrize("tag,name", [("1layer", "s2a_1layer"), ("full", "s2a_full")])
def test_s2a_estimator_and_training_forward(models, tag, name):
    s2a, o = models[name], outputs("s2a")
    q = s2a.config.num_quantizer
    cond = s2a.cond_emb(o["in.est.cond_code"]) + s2a.layer_emb.weight[q - 1][None, None]
    out = s2a.diff_estimator(o["in.est.x"], o["in.est.t"], cond=cond, attention_mask=o["in.est.x_mask"])
    torch.testing.assert_close(out, o[f"{tag}.est.out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(s2a.to_logits[q - 1](out), o[f"{tag}.est.logits_last"], atol=1e-4, rtol=0)
    for run in ("fwd", "fwd_noprompt"):
        r = next(r for r in recipes("s2a") if r["name"] == f"{tag}.{run}")
        torch.manual_seed(r["seed"])
        res = s2a(o["in.fwd.x0"][..., :q], o["in.fwd.x_mask"], cond_code=o["in.fwd.cond_code"])
        key = f"{tag}.{run}"
        assert torch.equal(res.mask_layer, o[key + ".mask_layer"])
        assert torch.equal(res.prompt_len, o[key + ".prompt_len"])
        assert torch.equal(res.final_mask, o[key + ".final_mask"])
        torch.testing.assert_close(res.logits, o[key + ".logits"], atol=1e-4, rtol=0)


def test_s2a_chained_runs(models):
    o = outputs("s2a")
    chains = [r for r in recipes("s2a") if r["call"].startswith("s2a_1layer")]
    assert len(chains) == 4
    for r in chains:
        a = r["args"]
        kw = decoding_args(a, r["noise_free"])
        torch.manual_seed(r["seed"])  # one seed, then both models draw in turn
        layer0 = models["s2a_1layer"].generate(
            semantic_ids=o["in.semantic"], prompt_codes=o["in.prompt"], n_timesteps=a["n_timesteps_1layer"], **kw
        )
        codes = models["s2a_full"].generate(
            semantic_ids=o["in.semantic"],
            prompt_codes=o["in.prompt"],
            n_timesteps=a["n_timesteps_full"],
            gt_codes=layer0,
            **kw,
        )
        assert torch.equal(layer0, o[f"1layer.{r['name']}.codes"]), r["name"]
        assert torch.equal(codes, o[f"full.{r['name']}.codes"]), r["name"]


@pytest.mark.parametrize("name", ["full.greedy_nogt", "full.greedy_maxlayer"])
def test_s2a_full_without_gt_and_max_layer(models, name):
    o = outputs("s2a")
    r = next(r for r in recipes("s2a") if r["name"] == name)
    a = r["args"]
    codes = models["s2a_full"].generate(
        semantic_ids=o["in.semantic"],
        prompt_codes=o["in.prompt"],
        n_timesteps=a["n_timesteps"],
        gt_codes=o[a["gt_code"]] if "gt_code" in a else None,
        max_layer=a.get("max_layer"),
        **decoding_args(a, r["noise_free"]),
    )
    assert torch.equal(codes, o[name + ".codes"])


def test_bad_generation_input(models):
    t2s, s2a, o = models["t2s"], models["s2a_full"], outputs("s2a")
    prompt, phones = torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="target_len"):
        t2s.generate(prompt_ids=prompt, phone_ids=phones, target_len=0)
    with pytest.raises(ValueError, match="prompt_ids out of range"):
        t2s.generate(prompt_ids=prompt + t2s.config.cond_codebook_size, phone_ids=phones, target_len=4)
    with pytest.raises(ValueError, match="n_timesteps"):
        t2s.generate(prompt_ids=prompt, phone_ids=phones, target_len=4, n_timesteps=0)
    q = s2a.config.num_quantizer
    with pytest.raises(ValueError, match="one step count per layer"):
        s2a.generate(semantic_ids=o["in.semantic"], prompt_codes=o["in.prompt"], n_timesteps=[1] * (q + 1))
    with pytest.raises(ValueError, match="gt_codes must be"):
        s2a.generate(
            semantic_ids=o["in.semantic"],
            prompt_codes=o["in.prompt"],
            n_timesteps=[1] * q,
            gt_codes=torch.zeros(1, 3, 1, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="longer than the acoustic prompt"):
        s2a.generate(semantic_ids=o["in.semantic"][:, :5], prompt_codes=o["in.prompt"], n_timesteps=[1] * q)
    with pytest.raises(ValueError, match="max_layer"):
        s2a.generate(semantic_ids=o["in.semantic"], prompt_codes=o["in.prompt"], n_timesteps=[1] * q, max_layer=q + 1)


def test_eager_attention_gives_the_same_trajectories(converted):
    """The original's attention (eager) and sdpa decode the same tokens (greedy T2S run and greedy S2A chain)."""
    models = load_generators(converted, "eager")
    assert models["t2s"].config._attn_implementation == "eager"
    o = outputs("t2s")
    r = next(r for r in recipes("t2s") if r["name"] == "gen_greedy_cfg_b2")
    a = r["args"]
    seq = models["t2s"].generate(
        prompt_ids=o[a["prompt"]],
        phone_ids=o[a["phone_id"]],
        target_len=a["target_len"],
        n_timesteps=a["n_timesteps"],
        **decoding_args(a, True),
    )
    assert torch.equal(seq, o["gen_greedy_cfg_b2.seq"])
    o = outputs("s2a")
    r = next(r for r in recipes("s2a") if r["name"] == "sampled_cfg")
    a = r["args"]
    kw = decoding_args(a, r["noise_free"])
    torch.manual_seed(r["seed"])
    layer0 = models["s2a_1layer"].generate(
        semantic_ids=o["in.semantic"], prompt_codes=o["in.prompt"], n_timesteps=a["n_timesteps_1layer"], **kw
    )
    codes = models["s2a_full"].generate(
        semantic_ids=o["in.semantic"],
        prompt_codes=o["in.prompt"],
        n_timesteps=a["n_timesteps_full"],
        gt_codes=layer0,
        **kw,
    )
    assert torch.equal(codes, o["full.sampled_cfg.codes"])
