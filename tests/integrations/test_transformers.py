"""``segaudit.integrations.transformers``: probabilities at the masks' size from tiny randomly
initialised Hugging Face models built from their configs (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the transformers integration is not tested")
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'segaudit[transformers]'): "
                           "the Hugging Face integration is not tested")

import torch.nn.functional as F  # noqa: E402

import segaudit  # noqa: E402
from datasets import write_masks  # noqa: E402
from segaudit import PredictionWriter  # noqa: E402
from segaudit.errors import InputError  # noqa: E402
from segaudit.integrations.transformers import probabilities, write_outputs  # noqa: E402
from segaudit.io.folds import recorded_folds  # noqa: E402

K = 5
SIZES = [(37, 53), (64, 48)]  # the masks' (H, W): neither is the model's input size


def segformer():
    config = transformers.SegformerConfig(num_labels=K, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                          hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
                                          num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16)
    return transformers.SegformerForSemanticSegmentation(config).eval()


def upernet():
    backbone = transformers.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                           out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.UperNetConfig(backbone_config=backbone, num_labels=K, hidden_size=16,
                                        auxiliary_in_channels=24, auxiliary_channels=8, use_auxiliary_head=False,
                                        pool_scales=[1, 2])
    return transformers.UperNetForSemanticSegmentation(config).eval()


def mask2former():
    backbone = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                                       num_heads=[1, 1, 1, 1], window_size=4,
                                       out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=K, num_queries=6, hidden_dim=32,
                                            mask_feature_size=32, feature_size=32, encoder_layers=1,
                                            decoder_layers=2, num_attention_heads=2, dim_feedforward=32,
                                            encoder_feedforward_dim=32, common_stride=4)
    return transformers.Mask2FormerForUniversalSegmentation(config).eval()


def run(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(pixel_values=torch.randn(len(SIZES), 3, 64, 64))


@pytest.mark.parametrize("build", [segformer, upernet], ids=["segformer", "upernet"])
def test_logits_models_give_softmax_of_the_bilinearly_resized_logits(build):
    outputs = run(build())
    assert outputs.logits.shape[:2] == (2, K)
    probs = probabilities(outputs, SIZES)
    for n, size in enumerate(SIZES):
        by_hand = F.interpolate(outputs.logits[n:n + 1], size=size, mode="bilinear",
                                align_corners=False)[0].softmax(dim=0)
        assert probs[n].shape == (K, *size) and probs[n].dtype == torch.float32
        torch.testing.assert_close(probs[n], by_hand, rtol=0, atol=1e-6)
        torch.testing.assert_close(probs[n].sum(0), torch.ones(size), rtol=0, atol=1e-5)


def test_the_argmax_is_the_image_processors(tmp_path):
    outputs = run(segformer())
    expected = transformers.SegformerImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=SIZES)
    for n, probs in enumerate(probabilities(outputs, SIZES)):
        assert torch.equal(probs.argmax(0), expected[n])


def test_mask2former_scores_are_the_processors_normalised():
    outputs = run(mask2former())
    probs = probabilities(outputs, SIZES)
    classes = outputs.class_queries_logits.softmax(-1)[..., :-1]
    masks = F.interpolate(outputs.masks_queries_logits, size=(384, 384), mode="bilinear", align_corners=False).sigmoid()
    scores = torch.einsum("bqc,bqhw->bchw", classes, masks)
    processor = transformers.Mask2FormerImageProcessor()
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=SIZES)
    for n, size in enumerate(SIZES):
        by_hand = F.interpolate(scores[n:n + 1], size=size, mode="bilinear", align_corners=False)[0]
        by_hand = by_hand / by_hand.sum(0, keepdim=True)
        torch.testing.assert_close(probs[n], by_hand, rtol=0, atol=1e-6)
        torch.testing.assert_close(probs[n].sum(0), torch.ones(size), rtol=0, atol=1e-5)
        assert torch.equal(probs[n].argmax(0), expected[n])


def test_write_outputs_writes_a_store_segaudit_scores(tmp_path):
    outputs = run(segformer())
    rng = np.random.default_rng(0)
    write_masks(tmp_path / "masks", {f"img{n}": rng.integers(0, K, size).astype(np.uint8)
                                     for n, size in enumerate(SIZES)})
    with PredictionWriter(tmp_path / "preds.zarr", classes=[f"c{k}" for k in range(K)]) as writer:
        write_outputs(writer, ["img0", "img1"], outputs, torch.tensor(SIZES), fold=1)
    assert recorded_folds(tmp_path / "preds.zarr") == {"img0": 1, "img1": 1}
    run_ = segaudit.score(tmp_path / "masks", tmp_path / "preds.zarr", methods=("softmin",))
    assert sorted(r.image_id for r in run_.results) == ["img0", "img1"]


def test_bad_outputs_and_sizes_are_refused():
    outputs = run(segformer())
    with pytest.raises(InputError, match=r"expected 2 \(height, width\) pairs for a batch of 2"):
        probabilities(outputs, [(10, 10)] * 3)
    with pytest.raises(InputError, match="not a semantic-segmentation output"):
        probabilities({"last_hidden_state": torch.zeros(1, 2, 3)}, [(4, 4)])
    assert [p.shape for p in probabilities(outputs, (20, 30))] == [(K, 20, 30)] * 2  # one size for all
