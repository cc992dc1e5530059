"""SAM and SAM 2 through Hugging Face transformers (`SamModel` / `Sam2Model`), from local weights.

The model is a local folder written by `save_pretrained` (config.json, weights, processor
config), or a hub model id that is already in the local Hugging Face cache: ids load with
`local_files_only=True` unless `HF_HUB_OFFLINE` is explicitly "0". Which architecture to build
comes from config.json's `model_type` ("sam" or "sam2").

Per chip the image is embedded once (`get_image_embeddings`), then each prompt is decoded
against those embeddings; `post_process_masks` brings the low-res mask logits back to the
chip's full resolution, where the mask is thresholded and its stability score computed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flywheel_core.compute.device import dtype_choice, resolve_device
from flywheel_core.masks.backends.prompting import (
    MASK_THRESHOLD,
    ModelWeightsNotFoundError,
    SamPromptArrays,
    best_candidate,
    predicted_iou,
    read_json,
    rgb_image,
    sam_prompt,
    stability_score,
)
from flywheel_core.masks.types import Prompt, RawMask

if TYPE_CHECKING:
    import torch

RANDOM_WEIGHTS_KEY = "flywheel_random_weights"
SUPPORTED_MODEL_TYPES = ("sam", "sam2")


def _local_files_only() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") != "0"


def _looks_like_hub_id(model: str) -> bool:
    """'org/name' (or a bare 'name'): no leading '/', '.', '~' and at most one '/'."""
    return not model.startswith(("/", ".", "~")) and model.count("/") <= 1 and "\\" not in model


def _how_to_provide(where: str) -> str:
    return (
        f"{where}. Nothing is downloaded at run time: put a model saved with "
        "`save_pretrained` (config.json, model.safetensors, processor config) in a local folder "
        "and configure that folder (e.g. under the GPU resource's model_dir), or write a tiny "
        "random-weight model with flywheel_core.masks.backends.hf_sam.write_tiny_sam"
    )


def _resolve_model(model: str | Path) -> tuple[str, str, dict[str, Any]]:
    """(source for from_pretrained, model_id, config dict); raises when nothing is local."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelWeightsNotFoundError(
                _how_to_provide(f"transformers model {path} is a file, expected a folder")
            )
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelWeightsNotFoundError(
                _how_to_provide(f"transformers model folder {path} has no config.json")
            )
        resolved = str(path.resolve())
        return resolved, resolved, read_json(config_file)
    text = str(model)
    if isinstance(model, Path) or not _looks_like_hub_id(text):
        raise ModelWeightsNotFoundError(
            _how_to_provide(f"transformers model folder not found: {path}")
        )
    from transformers import AutoConfig

    local_only = _local_files_only()
    try:
        config = AutoConfig.from_pretrained(text, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        where = (
            f"transformers model {text!r} is neither a local folder nor in the local Hugging "
            "Face cache (the hub is not asked unless HF_HUB_OFFLINE=0)"
            if local_only
            else f"transformers model {text!r} is not a local folder and could not be fetched"
        )
        raise ModelWeightsNotFoundError(_how_to_provide(where)) from exc
    return text, text, config.to_dict()


def _torch_device(device: str | torch.device) -> torch.device:
    import torch

    if isinstance(device, torch.device):
        return device
    return resolve_device(device)[0]


def _torch_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return dtype_choice(dtype, device)[0]


class TransformersSamBackend:
    """Prompted SAM / SAM 2 through transformers: one image embedding per chip."""

    name = "transformers"

    def __init__(
        self,
        model: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "fp32",
    ) -> None:
        source, model_id, config = _resolve_model(model)
        model_type = str(config.get("model_type", ""))
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"transformers model {model_id}: model_type {model_type!r} is not supported "
                f"(expected one of {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        self.model_id = model_id
        self.model_type = model_type
        self.trained = not bool(config.get(RANDOM_WEIGHTS_KEY, False))
        self.device = _torch_device(device)
        self.dtype = _torch_dtype(dtype, self.device)

        import transformers

        # SAM and SAM 2 share the loading interface; the classes differ by model type
        model_cls: Any = transformers.Sam2Model if model_type == "sam2" else transformers.SamModel
        processor_cls: Any = (
            transformers.Sam2Processor if model_type == "sam2" else transformers.SamProcessor
        )

        local_only = _local_files_only()
        try:
            self._processor = processor_cls.from_pretrained(source, local_files_only=local_only)
            loaded = model_cls.from_pretrained(
                source, local_files_only=local_only, dtype=self.dtype
            )
        except OSError as exc:
            raise ModelWeightsNotFoundError(
                _how_to_provide(f"transformers model {model_id}: weights or processor missing")
            ) from exc
        self._model = loaded.to(self.device).eval()

    def segment(self, image: np.ndarray, prompts: list[Prompt]) -> list[RawMask]:
        """One `RawMask` per prompt, in order; the chip is embedded once."""
        if not prompts:
            return []
        import torch
        from PIL import Image

        rgb = rgb_image(image)
        with torch.inference_mode():
            encoded = self._processor(images=Image.fromarray(rgb), return_tensors="pt")
            pixel_values = encoded["pixel_values"].to(self.device, self.dtype)
            embeddings = self._model.get_image_embeddings(pixel_values)
            return [self._decode(sam_prompt(p), embeddings, encoded) for p in prompts]

    def _decode(self, arrays: SamPromptArrays, embeddings: Any, encoded: Any) -> RawMask:
        inputs = (
            self._sam2_prompt_inputs(arrays, encoded)
            if self.model_type == "sam2"
            else self._sam_prompt_inputs(arrays, encoded)
        )
        out = self._model(image_embeddings=embeddings, multimask_output=True, **inputs)
        low_res = out.pred_masks.float().cpu()  # (1, 1, 3, 256, 256) mask logits
        if self.model_type == "sam2":
            full = self._processor.post_process_masks(
                low_res, encoded["original_sizes"], binarize=False
            )
        else:
            full = self._processor.post_process_masks(
                low_res, encoded["original_sizes"], encoded["reshaped_input_sizes"], binarize=False
            )
        logits = full[0][0].numpy()  # (3, H, W) at the chip's resolution
        scores = out.iou_scores.float().cpu().numpy().reshape(-1)
        best = best_candidate(scores)
        extra = {"predicted_iou_raw": float(scores[best]), "candidate": float(best)}
        object_logits = getattr(out, "object_score_logits", None)
        if object_logits is not None:
            extra["object_score_logit"] = float(object_logits.float().reshape(-1)[0])
        return RawMask(
            mask=logits[best] > MASK_THRESHOLD,
            predicted_iou=predicted_iou(scores[best]),
            stability_score=stability_score(logits[best]),
            extra=extra,
        )

    def _sam_prompt_inputs(self, arrays: SamPromptArrays, encoded: Any) -> dict[str, Any]:
        """SAM 1 inputs, scaled from chip pixels to the resized (longest side 1024) image.

        The same scaling SamProcessor applies; done here because SamProcessor only scales
        prompts when it is handed the image again.
        """
        import torch

        height, width = (int(v) for v in encoded["original_sizes"][0])
        new_h, new_w = (int(v) for v in encoded["reshaped_input_sizes"][0])
        scale = np.array([new_w / width, new_h / height], dtype=np.float32)
        inputs: dict[str, Any] = {}
        if arrays.box is not None:
            box = (arrays.box.reshape(2, 2) * scale).reshape(1, 1, 4)
            inputs["input_boxes"] = torch.from_numpy(box).to(self.device)
        if arrays.points is not None and arrays.labels is not None:
            points = (arrays.points * scale).reshape(1, 1, -1, 2)
            labels = arrays.labels.reshape(1, 1, -1)
            inputs["input_points"] = torch.from_numpy(points).to(self.device)
            inputs["input_labels"] = torch.from_numpy(labels).to(self.device)
        return inputs

    def _sam2_prompt_inputs(self, arrays: SamPromptArrays, encoded: Any) -> dict[str, Any]:
        """SAM 2 inputs through Sam2Processor, which scales prompts from `original_sizes`."""
        kwargs: dict[str, Any] = {}
        if arrays.box is not None:
            kwargs["input_boxes"] = [[arrays.box.tolist()]]
        if arrays.points is not None and arrays.labels is not None:
            kwargs["input_points"] = [[arrays.points.tolist()]]
            kwargs["input_labels"] = [[arrays.labels.tolist()]]
        prompt = self._processor(
            original_sizes=encoded["original_sizes"], return_tensors="pt", **kwargs
        )
        return {
            key: prompt[key].to(self.device)
            for key in ("input_boxes", "input_points", "input_labels")
            if key in prompt
        }


def _tiny_sam_config(kind: str) -> Any:
    """A tiny random-weight config of the real architecture (vision, prompt encoder, decoder).

    Sizes are consistent: the vision neck's output_channels (SAM) / FPN hidden size (SAM 2)
    equals the prompt encoder's and mask decoder's hidden_size, and SAM's positional embedding
    has num_pos_feats = hidden / 2 features per sin/cos half.
    """
    hidden = 32
    decoder = {
        "hidden_size": hidden,
        "mlp_dim": 64,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": hidden,
    }
    if kind == "sam":
        from transformers import SamConfig

        return SamConfig(
            vision_config={
                "hidden_size": 32,
                "output_channels": hidden,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "global_attn_indexes": [1],
                "num_pos_feats": hidden // 2,
                "mlp_dim": 64,
            },
            prompt_encoder_config={"hidden_size": hidden},
            mask_decoder_config=decoder,
        )
    if kind == "sam2":
        from transformers import Sam2Config

        # Hiera: 4 stages; the global-attention block must not open a query-pool stage
        # (block 3 is the second block of stage 2).
        dims = [8, 16, 32, 64]
        return Sam2Config(
            vision_config={
                "model_type": "sam2_vision_model",
                "backbone_config": {
                    "model_type": "sam2_hiera_det_model",
                    "hidden_size": dims[0],
                    "num_attention_heads": 1,
                    "blocks_per_stage": [1, 1, 2, 1],
                    "embed_dim_per_stage": dims,
                    "num_attention_heads_per_stage": [1, 1, 1, 1],
                    "global_attention_blocks": [3],
                },
                "backbone_channel_list": dims[::-1],
                "fpn_hidden_size": hidden,
            },
            prompt_encoder_config={"hidden_size": hidden},
            mask_decoder_config=decoder,
        )
    raise ValueError(f"unknown tiny model kind {kind!r}: expected 'sam' or 'sam2'")


def write_tiny_sam(folder: Path, kind: str = "sam") -> Path:
    """Save a tiny random-weight SAM (`kind="sam"`) or SAM 2 (`kind="sam2"`) model + processor.

    For tests and the offline demo: the real architecture at toy width, seeded random weights,
    the standard image processor (resize to 1024), and config.json marked
    `"flywheel_random_weights": true` so the back end reports `trained = False`.
    """
    import torch

    folder = Path(folder)
    config = _tiny_sam_config(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "sam2":
            from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

            model: Any = Sam2Model(config)
            processor: Any = Sam2Processor(image_processor=Sam2ImageProcessor())
        else:
            from transformers import SamImageProcessor, SamModel, SamProcessor

            model = SamModel(config)
            processor = SamProcessor(image_processor=SamImageProcessor())
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    config_file = folder / "config.json"
    data = json.loads(config_file.read_text())
    data[RANDOM_WEIGHTS_KEY] = True
    config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return folder
