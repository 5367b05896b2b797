"""Diffusion RAFT on tiny random-weight models built from configs (no downloads, CPU, well under 2 minutes)."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import open_clip
import pytest
import torch
from conftest import quiet_trainer
from PIL import Image
from run_outcome import TINY_DIGITS
from safetensors.torch import load_file

from raft.data.image_prompts import ClassNamePrompts, DigitPrompts
from raft.modules.denoising import DenoisingModule
from raft.policies.digits_diffusion import DigitsDiffusionPolicy
from raft.policies.stable_diffusion import LORA_FILE, MissingWeightsError, StableDiffusionPolicy
from raft.rewards.image.aesthetic import AestheticReward, MLPAestheticHead
from raft.rewards.image.clip_score import ClipScoreReward
from raft.rewards.image.digit_classifier import DigitClassifierReward
from raft.rewards.image.jpeg import JpegCompressibilityReward
from raft.sampling.image import DiffusionSampler
from raft.sampling.samples import read_samples
from raft.selection.selectors import LocalRanking
from raft.tasks.raft import RaftTask

TRAINER = quiet_trainer(max_steps=2, max_epochs=None)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on shared CPU cores run far faster on one thread than on several competing ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_tiny_sd(folder):
    """A complete Stable Diffusion folder with random weights: CLIP text encoder, VAE, cross-attention UNet."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789":  # a character-level BPE vocabulary, no merges
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "tok").mkdir(parents=True)
    (folder / "tok/vocab.json").write_text(json.dumps(vocab))
    (folder / "tok/merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "tok/vocab.json"), str(folder / "tok/merges.txt"), model_max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "sd")
    return folder / "sd"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny OpenCLIP architecture from a config dict, its random weights saved as a checkpoint file."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (folder / "raft-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / "raft-tiny-clip.json")
    torch.manual_seed(0)
    torch.save(open_clip.create_model("raft-tiny-clip").state_dict(), folder / "tiny_clip.pt")
    return {
        "model": "raft-tiny-clip",
        "pretrained": str(folder / "tiny_clip.pt"),
        "model_config": str(folder / "raft-tiny-clip.json"),
        "folder": folder,
    }


def sd_sampler(**kw):
    return DiffusionSampler(**{"K": 3, "steps": 2, "guidance_scale": 2.0, "resolution": 16, "batch_size": 4, **kw})


def lora_up_norm(folder) -> float:
    state = load_file(folder / LORA_FILE)
    return sum(v.abs().sum().item() for k, v in state.items() if "lora" in k and ("up" in k or "lora_B" in k))


def test_sd_raft_iteration_end_to_end(tiny_sd, tmp_path):
    policy = StableDiffusionPolicy(str(tiny_sd), dtype="float32", lora_rank=2)
    module = functools.partial(DenoisingModule, learning_rate=1e-2, batch_size=2)
    loop = RaftTask(
        policy=policy,
        reward=JpegCompressibilityReward(),
        sampler=sd_sampler(),
        selector=LocalRanking(),
        module=module,
        trainer=TRAINER,
        output_dir=tmp_path,
        iterations=1,
        batch_size=2,
        track_kl=False,
    )
    history = loop.run_iterations(["a cat", "a dog"])
    stage = tmp_path / "iter_000"
    scored = [json.loads(line) for line in (stage / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 6 and all(math.isfinite(s["reward"]) for s in scored)
    assert all((stage / s["response"]).is_file() for s in scored)
    selected = [json.loads(line) for line in (stage / "selected.jsonl").read_text().splitlines()]
    assert len(selected) == 2  # best of K per prompt
    for s in selected:
        assert s["reward"] == max(x["reward"] for x in scored if x["prompt_idx"] == s["prompt_idx"])
    # LoRA's up-projections start at zero: any non-zero entry means fine-tuning changed the adapter.
    assert lora_up_norm(stage / "checkpoint") > 0
    assert history[0]["best_of_k_reward"] >= history[0]["policy_reward"]


def test_lora_save_load_round_trip(tiny_sd, tmp_path):
    from peft.utils import get_peft_model_state_dict

    policy = StableDiffusionPolicy(str(tiny_sd), dtype="float32", lora_rank=2)
    pipe = policy._with_lora(policy._pipeline(torch.float32), None)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if "lora_B" in name:
                p.normal_()
    saved = {k: v.clone() for k, v in get_peft_model_state_dict(pipe.unet).items()}
    policy.save_lora(pipe.unet, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LORA_FILE]  # only the adapter is saved
    reloaded = get_peft_model_state_dict(policy._with_lora(policy._pipeline(torch.float32), tmp_path).unet)
    assert saved.keys() == reloaded.keys()
    assert all(torch.equal(saved[k], reloaded[k]) for k in saved)
    # a checkpoint changes what the policy samples
    without = policy.sample(None, [(0, "a cat")], sd_sampler(K=1), tmp_path / "a" / "same")
    with_lora = policy.sample(tmp_path, [(0, "a cat")], sd_sampler(K=1), tmp_path / "b" / "same")
    a = np.asarray(policy.response_for_reward(without[0], tmp_path / "a" / "same"))
    b = np.asarray(policy.response_for_reward(with_lora[0], tmp_path / "b" / "same"))
    assert not np.array_equal(a, b)


def test_sd_resolution_and_sampler_validation(tiny_sd, tmp_path):
    policy = StableDiffusionPolicy(str(tiny_sd), dtype="float32")
    samples = policy.sample(None, [(3, "a ship")], sd_sampler(K=2, resolution=24, scheduler="euler"), tmp_path)
    assert [(s.prompt_idx, s.sample_idx) for s in samples] == [(3, 0), (3, 1)]
    assert policy.response_for_reward(samples[0], tmp_path).size == (24, 24)
    for bad in ({"resolution": 20}, {"K": 0}, {"steps": 0}, {"scheduler": "nope"}, {"guidance_scale": 0.5}):
        with pytest.raises(ValueError, match="sampler"):
            sd_sampler(**bad)


def test_missing_sd_weights_fail_at_once_with_instructions(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match=r"model\.name_or_path=/path/to/stable-diffusion-v1-5"):
        StableDiffusionPolicy(str(tmp_path / "no-such-folder"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="HF_HUB_OFFLINE.*hub id with internet"):
        StableDiffusionPolicy("sd15")


def random_images(n, size=24, mode="RGB"):
    rng = np.random.default_rng(0)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return [Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode) for _ in range(n)]


def test_image_rewards_give_one_finite_score_per_image(tiny_clip, tmp_path):
    prompts = ["a cat 3", "a dog 5", "digit 3"]  # digits at the end for the digit classifier
    images = random_images(3)
    clip = ClipScoreReward(
        model=tiny_clip["model"],
        pretrained=tiny_clip["pretrained"],
        model_config=tiny_clip["model_config"],
        device="cpu",
        batch_size=2,
    )
    torch.manual_seed(0)
    heads = {"v1": torch.nn.Linear(16, 1), "v2": MLPAestheticHead(16)}
    rewards = [clip, DigitClassifierReward(), JpegCompressibilityReward(quality=80)]
    for name, head in heads.items():
        torch.save(head.state_dict(), tmp_path / f"{name}.pth")
        rewards.append(
            AestheticReward(
                head_path=str(tmp_path / f"{name}.pth"),
                head=name,
                clip_model=tiny_clip["model"],
                clip_pretrained=tiny_clip["pretrained"],
                device="cpu",
            )
        )
    for reward in rewards:
        scores = reward(prompts, images)
        reward.close()
        assert len(scores) == 3 and all(math.isfinite(s) for s in scores), type(reward).__name__
    assert all(0 <= s <= 1 for s in DigitClassifierReward()(prompts, images))
    assert all(-100 <= s <= 100 for s in clip(prompts, images))


def test_image_rewards_name_what_is_missing(tiny_clip):
    with pytest.raises(ValueError, match="reward.head_path=/path/to/it"):
        AestheticReward(head_path=None)
    with pytest.raises(ValueError, match="reward.pretrained is required"):
        ClipScoreReward(model=tiny_clip["model"], pretrained=None)
    with pytest.raises(ValueError, match="no such checkpoint file"):
        ClipScoreReward(model=tiny_clip["model"], pretrained="/no/such/clip.pt")
    with pytest.raises(ValueError, match="ending in a digit"):
        DigitClassifierReward()(["a cat"], random_images(1))


def test_digit_reward_recognises_real_digits():
    """On scikit-learn's digits the MNIST CNN should mostly name the right digit (no hard-coded score)."""
    from raft.policies.models.digits import digits_dataset

    pixels, labels = digits_dataset(16)
    images = [Image.fromarray(((p[0].numpy() + 1) * 127.5).astype(np.uint8), mode="L") for p in pixels[:200]]
    right = DigitClassifierReward()([f"digit {int(d)}" for d in labels[:200]], images)
    wrong = DigitClassifierReward()([f"digit {(int(d) + 1) % 10}" for d in labels[:200]], images)
    assert np.mean(right) > 0.5 > np.mean(wrong)


def test_legibility_is_the_best_digit_whatever_the_prompt():
    from raft.policies.models.digits import digits_dataset

    pixels, labels = digits_dataset(16)
    images = [Image.fromarray(((p[0].numpy() + 1) * 127.5).astype(np.uint8), mode="L") for p in pixels[:50]]
    legible = DigitClassifierReward(target="any")
    per_digit = [DigitClassifierReward()([f"digit {d}"] * 50, images) for d in range(10)]
    assert legible(["digit 0"] * 50, images) == pytest.approx(np.max(per_digit, axis=0).tolist(), abs=1e-6)
    assert legible(["digit 3"] * 50, images) == legible(["digit 0"] * 50, images)  # blind to the prompt
    with pytest.raises(ValueError, match="reward.target"):
        DigitClassifierReward(target="best")


def tiny_digits_policy(folder, **kw):
    return DigitsDiffusionPolicy(
        str(folder),
        base_resolution=8,
        channels=(8, 16, 16),
        pretrain_steps=3,
        pretrain_batch_size=16,
        bf16=False,
        pretrain_trainer=quiet_trainer(max_steps=3, precision="32-true"),
        **kw,
    )


def test_digits_policy_pretrain_and_one_raft_iteration(tmp_path, run_dir):
    policy = tiny_digits_policy(tmp_path / "pretrained")
    policy.pretrain()
    assert (tmp_path / "pretrained" / "pretrain.json").is_file()
    policy.pretrain()  # already there: no-op
    with pytest.raises(ValueError, match="delete it or set model.pretrained_dir"):
        tiny_digits_policy(tmp_path / "pretrained", seed=1).pretrain()
    sampler = DiffusionSampler(K=3, steps=2, guidance_scale=2.0, resolution=16, batch_size=4)
    module = functools.partial(DenoisingModule, learning_rate=1e-2, batch_size=2)
    loop = RaftTask(
        policy=policy,
        reward=DigitClassifierReward(),
        sampler=sampler,
        selector=LocalRanking(),
        module=module,
        trainer=TRAINER,
        output_dir=run_dir,
        iterations=1,
        batch_size=2,
        track_kl=False,
    )
    loop.run_iterations(DigitPrompts(in_domain=[1, 7]).prompts("train"))
    stage = run_dir / "iter_000"
    image = policy.response_for_reward(read_samples(stage / "samples.jsonl")[0], stage)
    assert image.size == (16, 16) and image.mode == "L"  # sampled above the 8x8 training resolution
    from diffusers import UNet2DModel

    before = UNet2DModel.from_pretrained(tmp_path / "pretrained" / "unet").state_dict()
    after = UNet2DModel.from_pretrained(stage / "checkpoint" / "unet").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_sigterm_during_an_image_stage_saves_no_checkpoint(tmp_path, run_dir):
    """The image policies fit through the same completion guard as the text ones: Lightning stops gracefully on
    SIGTERM and returns from `fit`, and a stage that saved that UNet would count as finished on resume."""
    import os
    import signal

    import pytorch_lightning as pl

    from raft.trainer.fit import TrainingInterrupted

    class SendSigterm(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            os.kill(os.getpid(), signal.SIGTERM)

    policy = tiny_digits_policy(tmp_path / "pretrained")
    policy.pretrain()
    loop = RaftTask(
        policy=policy,
        reward=DigitClassifierReward(),
        sampler=DiffusionSampler(K=2, steps=2, resolution=8, batch_size=4),
        selector=LocalRanking(),
        module=functools.partial(DenoisingModule, learning_rate=1e-2, batch_size=2),
        trainer=quiet_trainer(max_steps=2, precision="32-true", callbacks=[SendSigterm()]),
        output_dir=run_dir,
        iterations=1,
        batch_size=2,
        track_kl=False,
    )
    with pytest.raises(TrainingInterrupted, match="SIGTERM"):
        loop.run_iterations(DigitPrompts(in_domain=[1, 7]).prompts("train"))
    assert not (run_dir / "iter_000" / "checkpoint").exists()
    assert (run_dir / "iter_000" / "selected.jsonl").exists()  # the stages before it are kept


def test_prompt_sources():
    data = DigitPrompts(in_domain=[0, 1], out_of_domain=[9], repeats=2)
    assert data.prompts("train") == ["digit 0", "digit 1", "digit 0", "digit 1"]
    assert data.prompts("test") == ["digit 9"] and data.references("test") is None and data.chat is False
    cifar = ClassNamePrompts(template="a photo of a {}")
    assert len(cifar.prompts("train")) == 10 and len(cifar.prompts("test")) == 100
    assert cifar.prompts("train")[0] == "a photo of a airplane"
    with pytest.raises(ValueError, match="data split"):
        data.prompts("valid")


def test_diffusion_task_from_config_writes_table_and_grids(tmp_path, run_dir):
    """task=diffusion_raft built by Hydra from the digits preset, shrunk: pretrain, evaluate, RAFT, report."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import raft.cli.resolvers  # noqa: F401
    from raft.cli.main import CONFIG_DIR

    overrides = [
        *TINY_DIGITS,
        f"task.output_dir={run_dir}",
        f"model.pretrained_dir={tmp_path / 'pretrained'}",
        "trainer.callbacks=[]",
        "+trainer.enable_progress_bar=false",
        "task.iterations=1",
    ]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    result = instantiate(cfg.task, _convert_="all").run()
    run = run_dir
    for split in ("in_domain", "out_of_domain"):
        for when in ("before", "after"):
            for name in ("p(requested digit)", "legibility"):  # the preset's two Table 8 rows
                stats = result[when][split][name]
                assert stats["n"] == (4 if split == "in_domain" else 2) and 0 <= stats["mean"] <= 1
        with Image.open(run / f"grid_{split}.png") as grid:
            assert grid.width > 2 * grid.height // 2  # before and after side by side
    table = (run / "table.md").read_text()
    assert "in-domain before" in table and "| legibility |" in table and "±" in table
    assert (run / "iter_000" / "metrics.json").is_file()


def test_digit_reward_lowpass_sees_the_native_resolution():
    """lowpass=8 averages 2x2 cells of a 16x16 image: a checkerboard becomes flat grey, and a blocky image
    (an 8x8 one upsampled by 2, nearest) gives the CNN exactly the input its 8x8 original gives."""
    reward = DigitClassifierReward(lowpass=8)
    checker = np.where((np.indices((16, 16)).sum(0) % 2) == 0, 254, 0).astype(np.uint8)
    flat = np.full((16, 16), 127, dtype=np.uint8)  # (254 + 0) / 2
    a, b = (reward._inputs([Image.fromarray(x, mode="L")]) for x in (checker, flat))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(DigitClassifierReward()._inputs([Image.fromarray(checker, mode="L")]), b, atol=0.1)
    small = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    blocky = small.repeat(2, axis=0).repeat(2, axis=1)
    assert torch.allclose(
        reward._inputs([Image.fromarray(blocky, mode="L")]),
        DigitClassifierReward()._inputs([Image.fromarray(small, mode="L")]),
        atol=1e-6,
    )
    assert torch.equal(
        reward._inputs([Image.fromarray(small, mode="L")]),  # already at 8x8: unchanged
        DigitClassifierReward()._inputs([Image.fromarray(small, mode="L")]),
    )
    with pytest.raises(ValueError, match="lowpass"):
        DigitClassifierReward(lowpass=0)


def test_image_filters_read_the_stage_images(tmp_path):
    from raft.sampling.samples import Sample
    from raft.selection.filters import DarkBackgroundFilter, InkShareFilter, apply_filters

    clean = np.zeros((4, 4), dtype=np.uint8)
    clean[1:3, 1:3] = 255  # ink share 4/16 = 0.25, border mean 0
    grey_top = clean.copy()
    grey_top[0, :] = 255  # border (12 pixels) mean 4/12 = 0.33, ink share 8/16 = 0.5
    empty = np.zeros((4, 4), dtype=np.uint8)  # ink share 0
    samples = []
    for i, array in enumerate((clean, grey_top, empty)):
        Image.fromarray(array, mode="L").save(tmp_path / f"{i}.png")
        samples.append(Sample(prompt_idx=i, prompt="digit 1", response=f"{i}.png"))
    assert [s.prompt_idx for s in DarkBackgroundFilter(max_mean=0.15, border=1)(samples, tmp_path)] == [0, 2]
    assert [s.prompt_idx for s in DarkBackgroundFilter(max_mean=0.34, border=1)(samples, tmp_path)] == [0, 1, 2]
    assert [s.prompt_idx for s in InkShareFilter(min_share=0.1, max_share=0.4)(samples, tmp_path)] == [0]
    assert [s.prompt_idx for s in InkShareFilter(min_share=0.1, max_share=0.5)(samples, tmp_path)] == [0, 1]
    kept, removed = apply_filters([DarkBackgroundFilter(border=1), InkShareFilter(min_share=0.1)], samples, tmp_path)
    assert [s.prompt_idx for s in kept] == [0] and removed == {"dark_background": 1, "ink_share": 1}
    with pytest.raises(ValueError, match="stage folder"):
        apply_filters([DarkBackgroundFilter()], samples)
    with pytest.raises(ValueError, match="max_share"):
        InkShareFilter(min_share=0.6, max_share=0.5)


def test_digits_expert_data_only_of_the_prompted_digits(tmp_path):
    policy = tiny_digits_policy(tmp_path / "p", expert_ratio=1.5)
    images, labels = policy.expert_digits(torch.tensor([3, 1, 3, 1]), 12, "iter_000")
    assert images.shape == (6, 1, 12, 12) and set(labels.tolist()) <= {1, 3}  # round(1.5 * 4) = 6
    again, _ = policy.expert_digits(torch.tensor([3, 1, 3, 1]), 12, "iter_000")
    assert torch.equal(images, again)  # seeded by stage: a resumed stage trains on the same set
    with pytest.raises(ValueError, match="expert_ratio"):
        tiny_digits_policy(tmp_path / "p", expert_ratio=-1)


def test_digits_trainable_and_frozen_pick_the_fine_tuned_weights(tmp_path):
    from raft.policies.models.digits import build_digits_unet

    unet = build_digits_unet(8, (8, 16, 16))
    total = sum(p.numel() for p in unet.parameters())
    assert tiny_digits_policy(tmp_path / "p").select_trainable(unet) == total
    policy = tiny_digits_policy(tmp_path / "p", trainable=["mid_block", "up_blocks.0"], frozen=["class_embedding"])
    count = policy.select_trainable(unet)
    trained = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert 0 < count < total and trained
    assert all(n.startswith(("mid_block", "up_blocks.0")) for n in trained)
    policy = tiny_digits_policy(tmp_path / "p", frozen=["class_embedding"])
    policy.select_trainable(unet)
    assert not unet.class_embedding.weight.requires_grad and unet.conv_in.weight.requires_grad
    with pytest.raises(ValueError, match="no UNet parameter"):
        tiny_digits_policy(tmp_path / "p", frozen=[""]).select_trainable(unet)


def test_grid_bars_are_as_long_as_the_reward():
    from raft.report.image_grids import BAR, CAPTION, before_after_grid

    black = [Image.new("L", (8, 8)) for _ in range(2)]
    grid = before_after_grid([("before", black, [0.0, 0.5]), ("RAFT", black, [1.0, 0.25])], columns=2, scale=4)
    pixels = np.asarray(grid)
    bar_row = pixels[CAPTION + 32 + BAR // 2]  # the bars under the first (only) row of tiles

    def green(x0, x1):
        return int(sum(1 for p in bar_row[x0:x1] if p[1] > 100 and p[0] < 100))

    gap = max(4, 64 // 40)
    assert [green(0, 32), green(32, 64), green(64 + gap, 96 + gap), green(96 + gap, 128 + gap)] == [0, 16, 32, 8]
