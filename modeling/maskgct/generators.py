"""MaskGCT's two generators on the shared estimator: T2S (text -> semantic tokens) and S2A (semantic -> acoustic
RVQ tokens, layer by layer).

Both decode with `mask_predict` and classifier-free guidance on hidden states. With ``cfg > 0`` each step needs a
conditional pass (prompt + target) and an unconditional one (target only); by default both run as ONE batched
forward (the unconditional rows are right-aligned, left-padded and masked, with their own RoPE positions), and the
guidance statistics are computed on the conditional half only, as the original does with two passes.
``cfg_batching=False`` runs the two passes separately; the default (None) batches them on CUDA only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...configuration.maskgct import MaskGctS2AConfig, MaskGctT2SConfig
from .estimator import MaskGctDecoderLayer, MaskGctDiffusionTransformer
from .mask_predict import as_positive_int, check_generation_args, classifier_free_guidance, mask_predict


class MaskGctPreTrainedModel(PreTrainedModel):
    base_model_prefix = "diff_estimator"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MaskGctDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = False
    # the S2A checkpoints carry the empty embedding of the original's unused base LlamaModel (quirk Q-S1)
    _keys_to_ignore_on_load_unexpected = [r"diff_estimator\.embed_tokens\.weight"]

    @torch.no_grad()
    def _init_weights(self, module):
        # transformers' `init` functions skip tensors that were loaded from a checkpoint
        std = 0.02
        if isinstance(module, nn.Linear) and getattr(module, "is_adaptive_gain", False):
            init.zeros_(module.weight)  # adaptive RMSNorm gain W c_t + b starts at 1 for every t
            init.ones_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[module.padding_idx].zero_()



def _check_ids(ids: torch.Tensor, vocab: int, name: str, dims: int = 2) -> None:
    if not torch.is_tensor(ids) or ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer (long) tensor")
    if ids.dim() != dims:
        raise ValueError(f"{name} must have {dims} dims, got shape {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(
            f"{name} out of range: values must be in [0, {vocab}), got [{int(ids.min())}, {int(ids.max())}]"
        )


def _guided_pass(
    estimator,
    cond_x,
    uncond_x,
    t,
    cond_prefix=None,
    add_cond=None,
    add_uncond=None,
    cfg=0.0,
    rescale_cfg=1.0,
    batched=None,
    prefix_mask=None,
) -> torch.Tensor:
    """Estimator output of the N target positions, guided when ``cfg > 0``.

    cond_x [B, S, H] holds [prompt ; target] (the last N positions are the target), uncond_x [B, N, H] the target
    alone; ``cond_prefix`` [B, P, H] is the prefix of the conditional pass (T2S phones), ``add_cond`` [B, S, H] /
    ``add_uncond`` [B, N, H] the additive conditions (S2A). ``prefix_mask`` [B, P] masks padded prefix entries.
    """
    bsz, seq, _ = cond_x.shape
    n = uncond_x.shape[1]
    if batched is None:
        batched = cond_x.device.type == "cuda"
    tt = torch.full((bsz,), t, dtype=torch.float32, device=cond_x.device)
    num_prefix = 0 if cond_prefix is None else cond_prefix.shape[1]
    cond_mask = None
    if prefix_mask is not None:
        cond_mask = torch.cat([prefix_mask.to(cond_x.dtype), cond_x.new_ones(bsz, seq)], dim=1)
    if cfg <= 0:
        return estimator(cond_x, tt, cond=cond_prefix if add_cond is None else add_cond, attention_mask=cond_mask)[
            :, -n:
        ]
    if not batched:
        out_c = estimator(cond_x, tt, cond=cond_prefix if add_cond is None else add_cond, attention_mask=cond_mask)[
            :, -n:
        ]
        out_u = estimator(uncond_x, tt, cond=add_uncond)
    else:
        total = num_prefix + seq
        pad = seq - n
        x = torch.cat([cond_x, torch.cat([cond_x.new_zeros(bsz, pad, cond_x.shape[2]), uncond_x], 1)], 0)
        keep_c = cond_x.new_ones(bsz, total) if cond_mask is None else cond_mask
        keep_u = torch.cat([cond_x.new_zeros(bsz, total - n), cond_x.new_ones(bsz, n)], 1)
        mask = torch.cat([keep_c, keep_u], 0)
        pos_c = torch.arange(total, device=cond_x.device)[None].expand(bsz, -1)
        pos_u = torch.cat(
            [torch.zeros(total - n, dtype=torch.long, device=cond_x.device), torch.arange(n, device=cond_x.device)]
        )[None].expand(bsz, -1)
        positions = torch.cat([pos_c, pos_u], 0)
        if add_cond is not None:
            cond = torch.cat([add_cond, torch.cat([add_cond.new_zeros(bsz, pad, add_cond.shape[2]), add_uncond], 1)])
        else:
            cond = None if cond_prefix is None else torch.cat([cond_prefix, cond_prefix], 0)
        out = estimator(x, tt.repeat(2), cond=cond, attention_mask=mask, position_ids=positions)[:, -n:]
        out_c, out_u = out[:bsz], out[bsz:]
    return classifier_free_guidance(out_c, out_u, cfg, rescale_cfg)


@dataclass
class MaskGctT2SOutput(ModelOutput):
    """Training forward of the T2S model.

    Args:
        loss: cross-entropy of the masked target positions (``final_mask``).
        logits: [B, T, semantic vocab].
        final_mask: [B, T, 1] positions that count in the loss (masked and not padding).
        prompt_len: [B] unmasked prompt length drawn for each row.
        mask_prob: [B] masking probability drawn for each row.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    final_mask: torch.FloatTensor | None = None
    prompt_len: torch.LongTensor | None = None
    mask_prob: torch.FloatTensor | None = None


def _mask_prob(t: torch.Tensor) -> torch.Tensor:
    return torch.sin(t * torch.pi / 2)


def _masked_ce(logits, targets, final_mask):
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    weights = final_mask[..., 0].to(ce.dtype)
    return (ce * weights).sum() / weights.sum().clamp(min=1)


class MaskGctT2SModel(MaskGctPreTrainedModel):
    """Text-to-semantic MaskGCT generator (``cond_emb``, ``phone_emb``, ``mask_emb``, ``to_logit``,
    ``diff_estimator``: phones are a prefix of the estimator's sequence)."""

    config_class = MaskGctT2SConfig
    config: MaskGctT2SConfig
    main_input_name = "x0"

    def __init__(self, config: MaskGctT2SConfig):
        super().__init__(config)
        h = config.hidden_size
        self.mask_emb = nn.Embedding(1, h)
        self.cond_emb = nn.Embedding(config.cond_codebook_size, h)
        self.phone_emb = nn.Embedding(config.phone_vocab_size, h, padding_idx=config.phone_pad_id)
        self.to_logit = nn.Linear(h, config.cond_codebook_size)
        self.diff_estimator = MaskGctDiffusionTransformer(config, conditioning="prefix")
        self.post_init()

    def forward(
        self, x0: torch.LongTensor, x_mask: torch.Tensor | None = None, phone_id=None, phone_mask=None, **kwargs
    ) -> MaskGctT2SOutput:
        """Masked-token training step (spec 7.3): random t, random prompt, Bernoulli mask.

        Args:
            x0: semantic ids [B, T]; x_mask: [B, T] (1 = real frame); phone_id [B, Ph]; phone_mask [B, Ph].
        Random draws (global / default generator): rand(B) (t), rand(1), randint (prompt length), bernoulli.
        """
        _check_ids(x0, self.config.cond_codebook_size, "x0")
        bsz, length = x0.shape
        if x_mask is None:
            x_mask = torch.ones(bsz, length, device=x0.device)
        t = torch.clamp(torch.rand(bsz, device=x0.device), 1e-5, 1.0)
        mask_prob = _mask_prob(t)
        mask_prob = torch.where(mask_prob < 0.2, torch.ones_like(mask_prob) * 0.2, mask_prob)
        prompt_len, mask = _draw_prompt_and_mask(x0, mask_prob, self.config.cfg_scale, 0.4)
        mask = mask[..., None]
        xt = torch.where(mask.bool(), self.mask_emb.weight[0], self.cond_emb(x0))
        phone_embedding = None if phone_id is None else self.phone_emb(phone_id)
        attention_mask = x_mask
        if phone_embedding is not None:
            if phone_mask is None:
                phone_mask = torch.ones(phone_id.shape, device=x0.device)
            attention_mask = torch.cat([phone_mask.to(x_mask.dtype), x_mask], dim=1)
        embeds = self.diff_estimator(xt, t, cond=phone_embedding, attention_mask=attention_mask)
        logits = self.to_logit(embeds)
        final_mask = mask * x_mask[..., None]
        return MaskGctT2SOutput(
            loss=_masked_ce(logits, x0, final_mask),
            logits=logits,
            final_mask=final_mask,
            prompt_len=prompt_len,
            mask_prob=mask_prob,
        )

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: torch.LongTensor,
        phone_ids: torch.LongTensor,
        target_len: int,
        n_timesteps: int = 25,
        cfg: float = 2.5,
        rescale_cfg: float = 0.75,
        temperature: float = 0.9,
        filter_thres: float = 0.98,
        do_sample: bool = True,
        generator: torch.Generator | None = None,
        phone_mask: torch.Tensor | None = None,
        cfg_batching: bool | None = None,
    ) -> torch.LongTensor:
        """Generate ``target_len`` semantic tokens after a semantic prompt, conditioned on phones.

        Args:
            prompt_ids: prompt semantic ids [B, P] (P may be 0).
            phone_ids: phone ids [B, Ph] (prompt-text phones then target-text phones).
            target_len: number of tokens to generate (N > 0, same for every row).
            n_timesteps: mask-predict steps; cfg / rescale_cfg: guidance scale and std-rescale mix (cfg 0: off).
            temperature: Gumbel temperature at t=1 (annealed with t); filter_thres: top-k keeps ceil((1-thres)V).
            do_sample: False = noise-free (deterministic) decoding.
            generator: random generator (default: the global one of the model's device).
            phone_mask: [B, Ph], 0 for padded phones (batches of texts of different lengths).
            cfg_batching: run the conditional and unconditional passes as one batched forward (None: on CUDA,
                where a step is launch-bound; on CPU the two unpadded passes are cheaper). Same tokens either way.

        Returns:
            generated semantic ids [B, N].
        """
        cfg_ = self.config
        _check_ids(prompt_ids, cfg_.cond_codebook_size, "prompt_ids")
        _check_ids(phone_ids, cfg_.phone_vocab_size, "phone_ids")
        if phone_ids.shape[0] != prompt_ids.shape[0]:
            raise ValueError(f"phone_ids has {phone_ids.shape[0]} rows, prompt_ids {prompt_ids.shape[0]}")
        target_len = as_positive_int(target_len, "target_len (number of frames)")
        n_timesteps = check_generation_args(n_timesteps, temperature, filter_thres)
        device = self.device
        prompt_ids, phone_ids = prompt_ids.to(device), phone_ids.to(device)
        phone_embedding = self.phone_emb(phone_ids)
        prompt_emb = self.cond_emb(prompt_ids)
        mask_emb = self.mask_emb.weight[0]

        def predict_logits(ids, mask, t):
            cur = torch.where(mask[..., None], mask_emb, self.cond_emb(ids))
            out = _guided_pass(
                self.diff_estimator,
                torch.cat([prompt_emb, cur], 1),
                cur,
                t,
                cond_prefix=phone_embedding,
                cfg=cfg,
                rescale_cfg=rescale_cfg,
                batched=cfg_batching,
                prefix_mask=phone_mask,
            )
            return self.to_logit(out)

        return mask_predict(
            predict_logits,
            prompt_ids.shape[0],
            target_len,
            n_timesteps,
            device,
            temperature,
            filter_thres,
            do_sample=do_sample,
            generator=generator,
        )


def _draw_prompt_and_mask(x0, mask_prob, cfg_scale, prompt_fraction):
    """The original's prompt-length and Bernoulli-mask draws (x0 [B, T] ids of the masked layer)."""
    bsz, length = x0.shape
    if torch.rand(1) > cfg_scale:
        high = int(length * prompt_fraction) if prompt_fraction != 0.5 else length // 2
        prompt_len = torch.randint(min(length // 4, 5), high, (bsz,)).to(x0.device)
    else:
        prompt_len = torch.zeros(bsz, dtype=torch.long, device=x0.device)
    is_prompt = torch.arange(length, device=x0.device)[None, :] < prompt_len[:, None]
    mask = torch.bernoulli(torch.ones_like(x0, dtype=mask_prob.dtype) * mask_prob[..., None])
    mask[is_prompt] = 0
    empty = mask.sum(dim=1) == 0
    if empty.any():
        rows = torch.nonzero(empty)[:, 0]
        mask[rows, prompt_len[rows]] = 1
    return prompt_len, mask


@dataclass
class MaskGctS2AOutput(ModelOutput):
    """Training forward of an S2A model.

    Args:
        loss: cross-entropy of the masked positions of the trained layer.
        logits: [B, T, codebook_size] of layer ``mask_layer``.
        mask_layer: [1] the RVQ layer trained in this step.
        final_mask / prompt_len / mask_prob: as `MaskGctT2SOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mask_layer: torch.LongTensor | None = None
    final_mask: torch.FloatTensor | None = None
    prompt_len: torch.LongTensor | None = None
    mask_prob: torch.FloatTensor | None = None


class MaskGctS2AModel(MaskGctPreTrainedModel):
    """Semantic-to-acoustic MaskGCT generator (``cond_emb``, ``token_emb.{q}``, ``layer_emb``, ``mask_emb``,
    ``to_logits.{q}``, ``diff_estimator``: the semantic condition is added position-wise)."""

    config_class = MaskGctS2AConfig
    config: MaskGctS2AConfig
    main_input_name = "x0"

    def __init__(self, config: MaskGctS2AConfig):
        super().__init__(config)
        h, q = config.hidden_size, config.num_quantizer
        self.layer_emb = nn.Embedding(q, h)
        self.mask_emb = nn.Embedding(1, h)
        self.token_emb = nn.ModuleList([nn.Embedding(config.codebook_size, h) for _ in range(q)])
        self.to_logits = nn.ModuleList([nn.Linear(h, config.codebook_size) for _ in range(q)])
        self.cond_emb = nn.Embedding(config.cond_codebook_size, h)
        self.diff_estimator = MaskGctDiffusionTransformer(config, conditioning="add")
        self.post_init()

    def _draw_layer(self, device) -> torch.LongTensor:
        q = self.config.num_quantizer
        if self.config.mask_layer_schedule == "uniform":
            low = 0 if self.config.predict_layer_1 else 1
            return torch.randint(low, q, (1,)).to(device)
        if self.config.predict_layer_1:
            weights = torch.tensor([q - i for i in range(q)])
        else:
            weights = torch.tensor([0] + [q - i for i in range(q - 1)])
        weights = weights / weights.sum()
        return torch.multinomial(weights, 1).to(device)

    def forward(
        self, x0: torch.LongTensor, x_mask: torch.Tensor | None = None, cond_code=None, **kwargs
    ) -> MaskGctS2AOutput:
        """Masked-token training step (spec 7.3) on one randomly drawn RVQ layer.

        Args:
            x0: acoustic codes [B, T, num_quantizer]; x_mask [B, T]; cond_code: semantic ids [B, T].
        Random draws: rand(B) (t), multinomial (layer), rand(1), randint (prompt length), bernoulli.
        """
        cfg = self.config
        _check_ids(x0, cfg.codebook_size, "x0", dims=3)
        _check_ids(cond_code, cfg.cond_codebook_size, "cond_code")
        bsz, length, _ = x0.shape
        if x_mask is None:
            x_mask = torch.ones(bsz, length, device=x0.device)
        t = torch.clamp(torch.rand(bsz, device=x0.device), 1e-5, 1.0)
        mask_layer = self._draw_layer(x0.device)
        layer = int(mask_layer[0])
        mask_prob = _mask_prob(t)
        mask_prob = torch.where(mask_prob < 0.2, torch.ones_like(mask_prob) * 0.2, mask_prob)
        prompt_len, mask = _draw_prompt_and_mask(x0[:, :, layer], mask_prob, cfg.cfg_scale, 0.5)
        is_prompt = (torch.arange(length, device=x0.device)[None, :] < prompt_len[:, None])[..., None]
        mask = mask[..., None]
        mask_token = self.mask_emb.weight[0]
        xt = 0
        for idx, emb in enumerate(self.token_emb):
            if idx < layer:
                xt = xt + emb(x0[:, :, idx])
            elif idx == layer:
                xt = xt + torch.where(mask.bool(), mask_token, emb(x0[:, :, idx]))
            else:
                xt = xt + torch.where(is_prompt, emb(x0[:, :, idx]), mask_token)
        cond = self.cond_emb(cond_code) + self.layer_emb(mask_layer)[:, None]
        embeds = self.diff_estimator(xt, t, cond=cond, attention_mask=x_mask)
        logits = self.to_logits[layer](embeds)
        final_mask = mask * x_mask[..., None]
        return MaskGctS2AOutput(
            loss=_masked_ce(logits, x0[:, :, layer], final_mask),
            logits=logits,
            mask_layer=mask_layer,
            final_mask=final_mask,
            prompt_len=prompt_len,
            mask_prob=mask_prob,
        )

    @torch.no_grad()
    def generate(
        self,
        semantic_ids: torch.LongTensor,
        prompt_codes: torch.LongTensor,
        n_timesteps: list[int] | tuple[int, ...] | None = None,
        cfg: float = 2.5,
        rescale_cfg: float = 0.75,
        temperature: float = 1.5,
        filter_thres: float = 0.98,
        max_layer: int | None = None,
        gt_codes: torch.LongTensor | None = None,
        do_sample: bool = True,
        generator: torch.Generator | None = None,
        cfg_batching: bool | None = None,
    ) -> torch.LongTensor:
        """Generate the acoustic codes of the target frames, one RVQ layer after the other.

        Args:
            semantic_ids: semantic ids of prompt + target [B, P + N].
            prompt_codes: acoustic codes of the prompt [B, P, Q'] (Q' >= num_quantizer: all layers of the
                prompt are embedded, the 1-layer model uses layer 0 only).
            n_timesteps: steps per layer, a list of length ``num_quantizer`` (entries of ``gt_codes`` layers are
                ignored). Default: [25, 10, 1, ...] (truncated to num_quantizer).
            cfg / rescale_cfg / temperature / filter_thres / do_sample / generator / cfg_batching: as T2S.
            max_layer: predict layers below max_layer only (output has ``max_layer`` layers).
            gt_codes: known lower layers of the target [B, N, g]; prediction starts at layer g.

        Returns:
            codes [B, N, max_layer] (gt_codes layers first).
        """
        cfg_ = self.config
        q = cfg_.num_quantizer
        if n_timesteps is None:
            n_timesteps = ([25, 10] + [1] * q)[:q]
        n_timesteps = list(n_timesteps)
        if len(n_timesteps) != q:
            raise ValueError(f"n_timesteps must list one step count per layer ({q} entries), got {len(n_timesteps)}")
        _check_ids(semantic_ids, cfg_.cond_codebook_size, "semantic_ids")
        _check_ids(prompt_codes, cfg_.codebook_size, "prompt_codes", dims=3)
        bsz, total = semantic_ids.shape
        if prompt_codes.shape[0] != bsz:
            raise ValueError(f"prompt_codes has {prompt_codes.shape[0]} rows, semantic_ids {bsz}")
        if prompt_codes.shape[2] < q:
            raise ValueError(f"prompt_codes must hold at least {q} layers, got {prompt_codes.shape[2]}")
        prompt_len = prompt_codes.shape[1]
        n = total - prompt_len
        if n < 1:
            raise ValueError(
                f"semantic_ids ({total} frames) must be longer than the acoustic prompt ({prompt_len} frames)"
            )
        max_layer = q if max_layer is None else int(max_layer)
        if not 1 <= max_layer <= q:
            raise ValueError(f"max_layer must be in 1..{q}, got {max_layer}")
        gt_layers = 0
        if gt_codes is not None:
            _check_ids(gt_codes, cfg_.codebook_size, "gt_codes", dims=3)
            gt_layers = gt_codes.shape[2]
            if gt_codes.shape[:2] != (bsz, n):
                raise ValueError(f"gt_codes must be [{bsz}, {n}, g] (target frames), got {tuple(gt_codes.shape)}")
            if gt_layers > max_layer:
                raise ValueError(f"gt_codes has {gt_layers} layers, more than max_layer={max_layer}")
        for layer in range(gt_layers, max_layer):
            n_timesteps[layer] = check_generation_args(
                n_timesteps[layer], temperature, filter_thres, f"n_timesteps[{layer}]"
            )
        device = self.device
        semantic_ids, prompt_codes = semantic_ids.to(device), prompt_codes.to(device)
        cond_base = self.cond_emb(semantic_ids)
        mask_emb = self.mask_emb.weight[0]
        cum = torch.zeros(bsz, n, cfg_.hidden_size, device=device, dtype=cond_base.dtype)
        out = torch.zeros(bsz, n, max_layer, dtype=torch.long, device=device)
        if gt_codes is not None:
            gt_codes = gt_codes.to(device)
            out[:, :, :gt_layers] = gt_codes
            for i in range(gt_layers):
                cum = cum + self.token_emb[i](gt_codes[:, :, i])
        prompt_emb = 0
        for idx, emb in enumerate(self.token_emb):
            prompt_emb = prompt_emb + emb(prompt_codes[:, :, idx])
        for layer in range(gt_layers, max_layer):
            token_emb, to_logits = self.token_emb[layer], self.to_logits[layer]
            cond = cond_base + self.layer_emb.weight[layer][None, None]
            layers_above = max_layer - 1 - layer

            def predict_logits(
                ids, mask, t, cond=cond, token_emb=token_emb, to_logits=to_logits, layers_above=layers_above, cum=cum
            ):
                cur = cum + torch.where(mask[..., None], mask_emb, token_emb(ids))
                cur = cur + mask_emb[None, None] * layers_above
                hidden = _guided_pass(
                    self.diff_estimator,
                    torch.cat([prompt_emb, cur], 1),
                    cur,
                    t,
                    add_cond=cond,
                    add_uncond=cond[:, prompt_len:],
                    cfg=cfg,
                    rescale_cfg=rescale_cfg,
                    batched=cfg_batching,
                )
                return to_logits(hidden)

            ids = mask_predict(
                predict_logits,
                bsz,
                n,
                n_timesteps[layer],
                device,
                temperature,
                filter_thres,
                do_sample=do_sample,
                generator=generator,
            )
            cum = cum + token_emb(ids)
            out[:, :, layer] = ids
        return out


__all__ = ["MaskGctDecoderLayer", "MaskGctPreTrainedModel", "MaskGctS2AModel", "MaskGctT2SModel"]
