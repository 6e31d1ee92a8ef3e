"""ICVL model parts: the intention fusion, LoRA placement, answer-only labels, soft-token splicing, K x Z decoding
with the vocabulary mapper and PALM-style de-duplication."""
from __future__ import annotations

import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.methods.icvl import ICVLExperiment, build_model
from mmreason.methods.icvl.data import build_dataset, collate
from mmreason.methods.icvl.model import IGNORE, IntentionFusion, add_lora

TINY = "mmreason/methods/icvl/configs/tiny_synthetic.yaml"


def tiny_cfg(*overrides):
    return apply_overrides(merge(ICVLExperiment(), read_yaml(TINY)), list(overrides))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def test_fusion_is_identity_at_zero_init_and_then_uses_the_intention():
    torch.manual_seed(0)
    fusion = IntentionFusion(visual_dim=16, text_dim=24, dim=32, heads=4, ffn_mult=2, zero_init=True)
    visual = torch.randn(2, 8, 16)
    text_a, text_b = torch.randn(2, 5, 24), torch.randn(2, 5, 24)
    torch.testing.assert_close(fusion(visual, text_a), visual, rtol=0, atol=0)   # residual, nothing added yet
    torch.testing.assert_close(fusion(visual, text_b), visual, rtol=0, atol=0)
    torch.nn.init.normal_(fusion.out.weight)                                       # as after some training
    out_a, out_b = fusion(visual, text_a), fusion(visual, text_b)
    assert not torch.allclose(out_a, visual) and not torch.allclose(out_a, out_b)  # the intention changes the tokens
    # padded intention tokens are masked out: extra garbage behind the mask changes nothing
    mask = torch.tensor([[True] * 5 + [False] * 3] * 2)
    padded = torch.cat([text_a, 100 * torch.randn(2, 3, 24)], dim=1)
    torch.testing.assert_close(fusion(visual, padded, mask), out_a)


def test_only_lora_fusion_and_projector_train(model):
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith(("fusion.", "projector.")) for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable) and any("v_proj.lora_B" in n for n in trainable)
    assert not any("k_proj.lora" in n for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    ds = build_dataset(tiny_cfg(), "train")
    batch = collate([ds[i] for i in range(4)])
    model.zero_grad()
    model.loss(batch)["loss"].backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and grads <= set(trainable)
    assert any(n.startswith("fusion.") for n in grads) and any(n.startswith("projector.") for n in grads)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            torch.testing.assert_close(p, frozen_before[n])
    model.zero_grad()


def test_missing_lora_targets_fail_loudly():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=64,
                                      bos_token_id=0, eos_token_id=0))
    with pytest.raises(ValueError, match=r"\['q_proj', 'v_proj'\].*c_attn"):
        add_lora(gpt2, tiny_cfg().model)


def test_labels_cover_only_the_answer_and_soft_tokens_sit_at_the_placeholder(model):
    prompt = "Observed actions: take knife\nVideo: <visual>\nPrediction:"
    soft = torch.arange(3 * model.hidden, dtype=torch.float32).reshape(3, model.hidden)
    embeds, labels = model._sequence(prompt, soft, " cut onion, wash pan")
    pre = model._ids("Observed actions: take knife\nVideo: ", special=True)
    answer = model._ids(" cut onion, wash pan") + [model.eos_id]
    assert [lab for lab in labels if lab != IGNORE] == answer and labels[-len(answer):] == answer
    torch.testing.assert_close(embeds[len(pre):len(pre) + 3], soft)                # spliced where the marker was
    assert len(embeds) == len(labels)
    with pytest.raises(ValueError, match="placeholder"):
        model._sequence("no marker here", soft, None)


def test_anticipate_maps_noisy_text_and_dedupes_with_a_retry_cap(model, monkeypatch):
    """Noisy answers map onto the vocabulary (numbering, inflections, padding by the last action), unmappable and
    duplicate answers are no candidates, and after the PALM budget (K x (1 + dedupe_retries) answers) a prompt still
    short of K repeats its best. The sampler is replaced by a fixed stream of answers, taken in order."""
    vocab = model.vocab
    stream = iter(["1. Take the knife\n2. cutting onion", "take knife, cut onion, cut onion", "no actions here at all",
                   "wash pan; put bowl", "Take knife, cut onion"] + ["wash pan, put bowl"] * 20)
    drawn = []

    def fake_sample(rows, prefix, n, generators, z):
        texts = [next(stream) for _ in range(n * len(rows))]
        drawn.extend(texts)
        return texts, [-float(i) for i in range(len(texts))]

    monkeypatch.setattr(model, "_sample", fake_sample)
    monkeypatch.setattr(model.cfg, "dedupe_retries", 2)
    item = build_dataset(tiny_cfg(), "val")[0]
    cands = model.anticipate(item["visual"][None], [item["prompt"]], [item["intention"]], k=3, z=4)[0]
    assert len(drawn) == 3 * (1 + 2)                                               # the budget, then stop
    v, n = model.vocab.verbs.lookup, model.vocab.nouns.lookup
    first = [(v("take"), n("knife")), (v("cut"), n("onion")), (v("cut"), n("onion")), (v("cut"), n("onion"))]
    second = [(v("wash"), n("pan")), (v("put"), n("bowl")), (v("put"), n("bowl")), (v("put"), n("bowl"))]
    assert cands[0].pairs == first                                                 # padded by repeating the last
    assert cands[1].pairs == second
    assert len(cands) == 3 and cands[2].pairs == first                             # short after the cap: repeat
    assert all(len(c.pairs) == 4 for c in cands)
    assert all(0 <= v < len(vocab.verbs) and 0 <= n < len(vocab.nouns) for c in cands for v, n in c.pairs)


def test_real_sampling_gives_k_by_z_valid_actions(model):
    ds = build_dataset(tiny_cfg(), "val")
    batch = collate([ds[i] for i in range(2)])
    cands = model.anticipate(batch["visual"], batch["prompt"], batch["intention"], k=5, z=4, seed=3)
    assert len(cands) == 2 and all(len(row) == 5 for row in cands)
    for row in cands:
        assert all(len(c.pairs) == 4 for c in row)
        assert all(0 <= v < len(model.vocab.verbs) and 0 <= n < len(model.vocab.nouns) for c in row for v, n in c.pairs)
        assert [c.score for c in row] == sorted((c.score for c in row), reverse=True)


def test_vllm_switch_sends_text_prompts_without_the_visual_placeholder(model, monkeypatch):
    """The generation_backend=vllm path builds text-only requests (no soft tokens); a deterministic backend stands
    in for vLLM, which needs a GPU (the vLLM adapter itself is tested in tests/llm)."""
    from mmreason.llm import DeterministicBackend

    seen = []

    def respond(request):
        seen.append(request)
        return ["take knife, cut onion", "wash pan, put bowl", "cut pan"][request.sample_index % 3]

    monkeypatch.setattr(model.cfg, "generation_backend", "vllm")
    monkeypatch.setattr(model, "_vllm", DeterministicBackend(responder=respond), raising=False)
    item = build_dataset(tiny_cfg(), "val")[0]
    cands = model.anticipate(item["visual"][None], [item["prompt"]], [item["intention"]], k=3, z=2)[0]
    assert len(seen) == 3 and len({r.sample_index for r in seen}) == 3
    assert all("<visual>" not in r.prompt and "Video:" not in r.prompt for r in seen)
    assert seen[0].prompt.endswith("Prediction:") and item["intention"] in seen[0].prompt
    assert len({tuple(c.pairs) for c in cands}) == 3
