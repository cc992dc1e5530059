"""Training samples in the seed schema: one row per chip, image + mask + MSI + metadata.

Positives are chips whose every mask was accepted (their masks are merged into one); a chip with a
rejected mask is ambiguous and left out. Negatives are chips no active label meets, of two kinds
(`metadata.negative_source`):

- `hard`: the chip sits where an earlier round recorded a hard-negative candidate (an embedding
  neighbour of a detection the rules rejected; flywheel_core.flywheel.hard_negatives), at the same
  grid position on this date. No label meets it, and since every detection an earlier round
  accepted is an active label, no accepted detection meets it either: the documented rule for a
  candidate to become a negative. Its candidate ids, reasons, rounds and distance are kept in
  `metadata.hard_negative`. At most `hard_negative_ratio` per positive (at least one when there are
  candidates), nearest candidates first.
- `clean`: (almost) no pixel of the chip looks like the partition's labelled panels; with 30 %
  seed labels most unlabeled PV would otherwise enter as a false negative. "Looks like" is
  calibrated from the partition's own accepted masks (`PvLike`: inside the ellipsoid of their
  pixels' spectra), so it follows the imagery and every panel type the labels show; a partition
  without accepted masks uses the documented default, the VHR PV score above
  `negative_score_cut`. `negative_ratio` per positive, and at least `min_negatives`.

Every choice is ordered by a hash of the chip id, so a rerun picks the same chips.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from shapely import wkb
from shapely.geometry import MultiPolygon, Polygon

from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.masks.backends.classical import pv_score
from flywheel_core.masks.factory import union, unpack
from flywheel_core.store.lance_tables import pixels_field
from flywheel_core.train.splits import block_of, split_of

NAMESPACE = uuid.UUID("5b0c8f0e-7d1a-4a57-9a43-2f0e8d6c7b11")

MASK_QA_TYPE = pa.struct(
    [
        ("label_id", pa.string()),
        ("backend", pa.string()),
        ("model_id", pa.string()),
        ("weights", pa.string()),
        ("iou_with_prompt", pa.float64()),
        ("predicted_iou", pa.float64()),
        ("stability_score", pa.float64()),
        ("area_ratio", pa.float64()),
        ("mask_area_m2", pa.float64()),
    ]
)

HARD_NEGATIVE_TYPE = pa.struct(
    [
        ("candidate_ids", pa.list_(pa.string())),
        ("reasons", pa.list_(pa.string())),
        ("rounds", pa.list_(pa.int32())),
        ("neighbour_uids", pa.list_(pa.string())),
        ("min_distance", pa.float64()),
    ]
)

METADATA_TYPE = pa.struct(
    [
        ("cell", pa.string()),
        ("date", pa.string()),
        ("chip_id", pa.string()),
        ("s2_token", pa.string()),
        ("s2_token_level", pa.int16()),
        ("h3_cell", pa.string()),
        ("split_block", pa.string()),
        ("split_level", pa.int16()),
        ("split", pa.string()),
        ("negative", pa.bool_()),
        ("negative_source", pa.string()),  # null for positives, "clean" or "hard"
        ("hard_negative", HARD_NEGATIVE_TYPE),  # null unless negative_source == "hard"
        ("pv_like_cut", pa.float64()),  # the partition's PV-like cut (samples.PvLike)
        ("sensor", pa.string()),
        ("msi_sensor", pa.string()),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64())),
        ("gsd_m", pa.float64()),
        ("footprint", pa.binary()),
        ("vhr_shape", pa.list_(pa.int32())),
        ("vhr_dtype", pa.string()),
        ("vhr_bands", pa.list_(pa.string())),
        ("msi_shape", pa.list_(pa.int32())),
        ("msi_channels", pa.list_(pa.string())),
        ("msi_gsd_m", pa.float64()),
        ("cloud_fraction", pa.float64()),
        ("mask_qa", pa.list_(MASK_QA_TYPE)),
    ]
)

TRAINING_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("uuid", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        ("split", pa.string()),
        ("prompt_geometry", pa.binary()),  # WKB EPSG:4326 of the merged prompts; null for negatives
        pixels_field("vhr_image_chip"),  # uint8 (bands, H, W), shape in metadata.vhr_shape
        pixels_field("generated_mask"),  # uint8 (H, W), 1 = panel
        pixels_field("msi_image_chip"),  # float32 (channels, h, w), shape in metadata.msi_shape
        ("metadata", METADATA_TYPE),
    ]
)


@dataclass(frozen=True)
class SampleSettings:
    negative_ratio: float = 1.0
    min_negatives: int = 2  # clean negatives per partition even without positives
    hard_negative_ratio: float = 1.0
    negative_max_pv_fraction: float = 0.001
    # Default PV-like cut (DN) for a partition without accepted masks to calibrate from: the
    # demo world's panels score >= 18 where its roofs and ground do not; other imagery calibrates.
    negative_score_cut: float = 18.0
    pv_like_quantile: float = 0.1  # outside the accepted masks' (1 - this) pixel ellipsoid
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


def _rank(chip_id: str) -> str:
    return hashlib.sha256(chip_id.encode()).hexdigest()


def _msi_stack(msi: dict) -> tuple[np.ndarray, list[str]]:
    h, w = msi["height"], msi["width"]
    refl = np.frombuffer(msi["reflectance"], np.float32).reshape(-1, h, w)
    idx = np.frombuffer(msi["indices"], np.float32).reshape(-1, h, w)
    return np.concatenate([refl, idx]), list(msi["band_names"]) + list(msi["index_names"])


def _qa(m: dict) -> dict:
    return {k: m[k] for k in MASK_QA_TYPE.names}


def _row(
    chip: dict,
    msi: dict,
    masks: list[dict],
    split_level: int,
    fractions: tuple,
    negative_source: str | None = None,
    hard_negative: dict | None = None,
    pv_like_cut: float | None = None,
) -> dict:
    h, w = chip["height"], chip["width"]
    merged = np.zeros((h, w), dtype=np.uint8)
    for m in masks:
        merged |= unpack(m["mask"], m["height"], m["width"]).astype(np.uint8)
    prompts = [wkb.loads(m["prompt_geometry"]) for m in masks]
    # Prompts reprojected to lon/lat can pinch (a refined model label's many parts): repair first
    prompt_union = union(prompts) if prompts else None
    if prompt_union is not None and isinstance(prompt_union, Polygon):
        prompt_union = MultiPolygon([prompt_union])
    stack, channels = _msi_stack(msi)
    block = block_of(chip["center_lon"], chip["center_lat"], split_level)
    split = split_of(block, fractions)
    sample_id = str(uuid.uuid5(NAMESPACE, chip["chip_id"]))
    return {
        "uid": chip["chip_id"],
        "uuid": sample_id,
        "cell": chip["cell"],
        "date": chip["date"],
        "split": split,
        "prompt_geometry": wkb.dumps(prompt_union) if prompt_union is not None else None,
        "vhr_image_chip": chip["image"],
        "generated_mask": merged.tobytes(),
        "msi_image_chip": stack.astype(np.float32).tobytes(),
        "metadata": {
            "cell": chip["cell"],
            "date": chip["date"],
            "chip_id": chip["chip_id"],
            "s2_token": chip["s2_token"],
            "s2_token_level": chip["s2_token_level"],
            "h3_cell": chip["h3_cell"],
            "split_block": block,
            "split_level": split_level,
            "split": split,
            "negative": not masks,
            "negative_source": negative_source,
            "hard_negative": hard_negative,
            "pv_like_cut": pv_like_cut,
            "sensor": chip["sensor"],
            "msi_sensor": msi["sensor"],
            "crs": chip["crs"],
            "transform": list(chip["transform"]),
            "gsd_m": chip["gsd_m"],
            "footprint": chip["footprint"],
            "vhr_shape": [chip["bands"], h, w],
            "vhr_dtype": chip["dtype"],
            "vhr_bands": list(chip["band_names"]),
            "msi_shape": list(stack.shape),
            "msi_channels": channels,
            "msi_gsd_m": msi["gsd_m"],
            "cloud_fraction": msi["cloud_fraction"],
            "mask_qa": [_qa(m) for m in masks],
        },
    }


@dataclass(frozen=True)
class PvLike:
    """Which pixels look like the partition's labelled panels.

    Calibrated ("mahalanobis"): the pixels of the partition's accepted masks give a mean and a
    covariance of (R, G, B, NIR); a pixel is PV-like inside their `pv_like_quantile` ellipsoid
    (squared Mahalanobis distance <= the chi-square quantile). Any panel type the labels show
    counts, whatever its colour. Default ("score", without accepted masks): the VHR PV score
    (B − R) + ½·(B − NIR) above `negative_score_cut` DN.
    """

    method: str
    cut: float
    mean: np.ndarray | None = None
    inv_cov: np.ndarray | None = None

    def fraction(self, chip: dict) -> float:
        pixels = chip_image(chip).transpose(1, 2, 0)
        if self.mean is None or self.inv_cov is None:
            return float(np.mean(pv_score(pixels) > self.cut))
        d = pixels.reshape(-1, pixels.shape[-1]).astype(np.float32) - self.mean
        return float(np.mean(np.einsum("ij,jk,ik->i", d, self.inv_cov, d) <= self.cut))

    def describe(self) -> str:
        return f"{self.method} <= {self.cut:.3g}"


def position_key(chip_id: str) -> str:
    """`<cell>|r..c..` of a chip id `<cell>|<date>|r..c..`: the same place on every date."""
    cell, _, window = chip_id.split("|")
    return f"{cell}|{window}"


def pv_like(chips: list[dict], masks: list[dict], settings: SampleSettings) -> PvLike:
    """The partition's PV-like test (PvLike), from its accepted masks when it has any."""
    from scipy.stats import chi2

    by_id = {c["chip_id"]: c for c in chips}
    pixels = []
    for m in masks:
        chip = by_id.get(m["chip_id"])
        if not m["accepted"] or chip is None:
            continue
        inside = unpack(m["mask"], m["height"], m["width"])
        if inside.any():
            pixels.append(chip_image(chip).transpose(1, 2, 0)[inside].astype(np.float64))
    stacked = np.concatenate(pixels) if pixels else np.zeros((0, 4))
    if len(stacked) <= 4 * stacked.shape[1]:
        return PvLike(
            "default score (no accepted mask to calibrate from)", settings.negative_score_cut
        )
    cov = np.cov(stacked, rowvar=False) + np.eye(stacked.shape[1]) * 1.0  # 1 DN² floor
    cut = float(chi2.ppf(1.0 - settings.pv_like_quantile, df=stacked.shape[1]))
    return PvLike(
        f"mahalanobis to {len(pixels)} accepted masks' pixels",
        cut,
        stacked.mean(0).astype(np.float32),
        np.linalg.inv(cov).astype(np.float32),
    )


def _hard_negative(candidates: list[dict]) -> dict:
    ordered = sorted(candidates, key=lambda c: (c["distance"], c["candidate_id"]))
    return {
        "candidate_ids": [c["candidate_id"] for c in ordered],
        "reasons": sorted({c["reason"] for c in ordered}),
        "rounds": sorted({int(c["round"]) for c in ordered}),
        "neighbour_uids": sorted({c["neighbour_uid"] for c in ordered}),
        "min_distance": float(ordered[0]["distance"]),
    }


def build_samples(
    chips: list[dict],
    msi: list[dict],
    masks: list[dict],
    settings: SampleSettings,
    split_level: int,
    hard_candidates: list[dict] | None = None,
) -> tuple[list[dict], dict[str, int | float | str]]:
    """(rows, counts): positives from accepted masks, hard and clean negatives (module doc).

    `hard_candidates` are earlier rounds' `hard_negatives` rows whose neighbour chip is at one of
    these chips' positions (any date before this one).
    """
    msi_by_chip = {m["chip_id"]: m for m in msi}
    masks_by_chip: dict[str, list[dict]] = {}
    for m in masks:
        masks_by_chip.setdefault(m["chip_id"], []).append(m)
    by_place: dict[str, list[dict]] = {}
    for c in hard_candidates or []:
        by_place.setdefault(position_key(c["neighbour_uid"]), []).append(c)
    test = pv_like(chips, masks, settings)
    tally = dict.fromkeys(
        ("positives", "negatives", "hard_negatives", "ambiguous", "no_msi", "pv_like_unlabeled"), 0
    )
    rows, clean, hard = [], [], []
    fractions = settings.split_fractions
    for chip in chips:
        if chip["chip_id"] not in msi_by_chip:
            tally["no_msi"] += 1
            continue
        ms = masks_by_chip.get(chip["chip_id"], [])
        if ms and all(m["accepted"] for m in ms):
            rows.append(_row(chip, msi_by_chip[chip["chip_id"]], ms, split_level, fractions))
            tally["positives"] += 1
        elif ms:
            tally["ambiguous"] += 1
        elif position_key(chip["chip_id"]) in by_place:
            hard.append(chip)
        elif test.fraction(chip) > settings.negative_max_pv_fraction:
            tally["pv_like_unlabeled"] += 1
        else:
            clean.append(chip)
    positives = tally["positives"]
    n_hard = max(round(settings.hard_negative_ratio * positives), 1) if hard else 0
    info = {c["chip_id"]: _hard_negative(by_place[position_key(c["chip_id"])]) for c in hard}
    hard.sort(key=lambda c: (info[c["chip_id"]]["min_distance"], _rank(c["chip_id"])))
    for chip in hard[:n_hard]:
        msi_row = msi_by_chip[chip["chip_id"]]
        rows.append(
            _row(chip, msi_row, [], split_level, fractions, "hard", info[chip["chip_id"]], test.cut)
        )
        tally["hard_negatives"] += 1
    n_clean = max(round(settings.negative_ratio * positives), settings.min_negatives)
    for chip in sorted(clean, key=lambda c: _rank(c["chip_id"]))[:n_clean]:
        msi_row = msi_by_chip[chip["chip_id"]]
        rows.append(_row(chip, msi_row, [], split_level, fractions, "clean", None, test.cut))
        tally["negatives"] += 1
    counts: dict[str, int | float | str] = {**tally, "pv_like": test.describe()}
    return rows, counts
