"""Hugging Face ``transformers`` segmentation models: out-of-fold probabilities at the masks' size.

A semantic-segmentation model's outputs are not yet what segaudit scores: SegFormer's logits
come at 1/4 of the input's resolution, UPerNet's at the (resized) input's, and Mask2Former
gives per-query classes and masks. The image processors' ``post_process_semantic_segmentation``
turns them into an argmax at each image's size; :func:`probabilities` makes the same resizing
and keeps the distribution instead:

- **Per-pixel logits** (``outputs.logits``, (B, K, h, w): SegFormer, UPerNet, DPT, BEiT,
  MobileViT, Data2Vec-vision): resized bilinearly (``align_corners=False``) to each target
  size, as the processors do, then a softmax over the classes in float32.
- **Mask classification** (``outputs.class_queries_logits`` (B, Q, K+1) and
  ``outputs.masks_queries_logits`` (B, Q, h, w): Mask2Former, MaskFormer, OneFormer): the
  class scores sum_q softmax(class_q)[k] * sigmoid(mask_q) (the "no object" class dropped),
  the masks first resized to 384 x 384 for Mask2Former, whose processor does so, then resized
  bilinearly to each target size. These scores are not a distribution; each pixel's scores
  are divided by their sum, so the argmax is the processor's and the values sum to 1.

:func:`write_outputs` writes a batch straight into a :class:`~segaudit.PredictionWriter`::

    from segaudit import PredictionWriter
    from segaudit.integrations.transformers import write_outputs

    with PredictionWriter("preds.zarr", classes=[model.config.id2label[k] for k in
                                                 range(model.config.num_labels)]) as writer:
        for ids, images, mask_sizes in held_out:               # this fold's images, never trained on
            inputs = processor(images=images, return_tensors="pt")
            with torch.no_grad():
                outputs = model(**inputs)
            write_outputs(writer, ids, outputs, mask_sizes, fold=k)   # sizes: each mask's (H, W)

torch and transformers are imported by the functions only (``pip install 'segaudit[transformers]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError

#: Mask2Former's post-processing first resizes the mask logits to this size ("the
#: preprocessed image size ... for all models", transformers' image_processing_mask2former).
MASK2FORMER_SIZE = (384, 384)


def _sizes(target_sizes, batch: int) -> list[tuple[int, int]]:
    """One (H, W) per image: a sequence of pairs, an (B, 2) tensor/array, or one pair for all."""
    if hasattr(target_sizes, "tolist"):
        target_sizes = target_sizes.tolist()
    target_sizes = list(target_sizes)
    if len(target_sizes) == 2 and all(isinstance(v, int) for v in target_sizes):
        target_sizes = [tuple(target_sizes)] * batch
    sizes = [tuple(int(v) for v in size) for size in target_sizes]
    if len(sizes) != batch or any(len(size) != 2 or min(size) < 1 for size in sizes):
        raise InputError(f"target sizes: expected {batch} (height, width) pairs for a batch of {batch}, "
                         f"got {target_sizes!r}")
    return sizes


def _field(outputs, name: str):
    value = getattr(outputs, name, None)
    if value is None and isinstance(outputs, dict):
        value = outputs.get(name)
    return value


def mask_classification_size(outputs) -> tuple[int, int] | None:
    """The intermediate size the model's own post-processing resizes mask logits to (Mask2Former: 384 x 384)."""
    return MASK2FORMER_SIZE if type(outputs).__name__.startswith("Mask2Former") else None


def probabilities(outputs, target_sizes, *, intermediate_size: tuple[int, int] | None | str = "auto"):
    """Per-image class probabilities at the target sizes, from a segmentation model's outputs.

    Parameters
    ----------
    outputs : ModelOutput or dict
        The model's outputs: with ``logits`` (B, K, h, w), or with ``class_queries_logits``
        (B, Q, K+1) and ``masks_queries_logits`` (B, Q, h, w).
    target_sizes : sequence of (int, int), or one (int, int)
        Each image's (height, width): its mask's size.
    intermediate_size : (int, int), None or "auto"
        Mask classification only: the size the mask logits are resized to before the class
        scores are formed. ``"auto"``: 384 x 384 for Mask2Former's outputs (as its processor),
        none for MaskFormer's and OneFormer's.

    Returns
    -------
    list of torch.Tensor
        One float32 (K, H, W) tensor per image, each pixel's values summing to 1.

    Raises
    ------
    InputError
        For outputs of another kind, or target sizes that do not fit the batch.
    """
    import torch
    import torch.nn.functional as F

    logits = _field(outputs, "logits")
    classes, masks = _field(outputs, "class_queries_logits"), _field(outputs, "masks_queries_logits")
    if logits is not None and getattr(logits, "ndim", 0) == 4:
        sizes = _sizes(target_sizes, logits.shape[0])
        result = []
        for n, size in enumerate(sizes):
            one = logits[n:n + 1].detach().float()
            if tuple(one.shape[-2:]) != size:
                one = F.interpolate(one, size=size, mode="bilinear", align_corners=False)
            result.append(one[0].softmax(dim=0))
        return result
    if classes is not None and masks is not None:
        sizes = _sizes(target_sizes, classes.shape[0])
        if intermediate_size == "auto":
            intermediate_size = mask_classification_size(outputs)
        masks = masks.detach().float()
        if intermediate_size is not None:
            masks = F.interpolate(masks, size=tuple(intermediate_size), mode="bilinear", align_corners=False)
        class_probs = classes.detach().float().softmax(dim=-1)[..., :-1]        # the null class dropped
        scores = torch.einsum("bqc,bqhw->bchw", class_probs, masks.sigmoid())
        result = []
        for n, size in enumerate(sizes):
            one = scores[n:n + 1]
            if tuple(one.shape[-2:]) != size:
                one = F.interpolate(one, size=size, mode="bilinear", align_corners=False)
            one = one[0].clamp(min=0)  # bilinear weights are non-negative; guard the division anyway
            result.append(one / one.sum(dim=0, keepdim=True).clamp(min=torch.finfo(one.dtype).tiny))
        return result
    raise InputError(f"{type(outputs).__name__}: not a semantic-segmentation output (expected 'logits' of shape "
                     "(B, K, h, w), or 'class_queries_logits' and 'masks_queries_logits')")


def write_outputs(writer, image_ids: Sequence[str], outputs, target_sizes, *, fold: int | None = None,
                  intermediate_size: tuple[int, int] | None | str = "auto") -> None:
    """Write a batch's :func:`probabilities` into a :class:`~segaudit.PredictionWriter`, one image at a time.

    ``image_ids``: the batch's ids (the masks' ids); ``target_sizes``: each mask's (H, W);
    ``fold``: the fold whose model made these predictions (recorded for the fold check).
    """
    if isinstance(image_ids, str):
        raise InputError("write_outputs needs a sequence of image ids, not one string")
    image_ids = list(image_ids)
    probs = probabilities(outputs, target_sizes, intermediate_size=intermediate_size)
    if len(probs) != len(image_ids):
        raise InputError(f"{len(image_ids)} image ids for a batch of {len(probs)} outputs")
    for image_id, one in zip(image_ids, probs):
        writer.write(image_id, one, fold=fold)
