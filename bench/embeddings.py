"""Embedding throughput against the bare model, and ANN search against exact numpy, in one run.

(a) Throughput. N synthetic uint8 chips (4 x 256 x 256, like the flywheel's VHR chips) go through
    `embed_images` (band selection, resize, normalisation, forward, token split, L2 norms, copies
    back to numpy) and, as the ceiling, through `bare_forward` alone on the same batches already
    preprocessed on the device. Interleaved `--repeat` times, best of each; the overhead ratio is
    embed_images / bare forwards. Default model: the tiny random-weight DINOv3 config (offline);
    `--model vits16-random` for the real ViT-S/16 shape with random weights (realistic compute),
    `--model FOLDER` for real weights saved with save_pretrained.

(b) Search. `--n` (default 100,000) synthetic 384-d vectors, a Gaussian mixture (clusters of
    unequal spread, so neighbours are neither trivial nor random) normalised to unit length, and
    `--queries` (200) held-out queries from the same mixture. Ground truth is exact numpy top-10 by
    cosine distance. Measured on the same vectors and queries, one query at a time:
    - numpy exact (matrix-vector product + argpartition): the baseline latency;
    - LanceDB with the project's index (IVF_HNSW_SQ, cosine; `--lance-index pq` for IVF_PQ),
      build time, recall@10 and latency with and without `refine_factor` re-ranking, and the
      exact brute-force scan (what `search` does below the index threshold);
    - DuckDB vss HNSW over a Parquet export of the vectors (`flywheel_core.embed.vss`), build
      time, recall@10 and latency.
    Ratios are latencies against numpy's.

    python bench/embeddings.py [--chips 64] [--batch 16] [--model tiny|vits16-random|FOLDER]
                               [--repeat 3] [--n 100000] [--dim 384] [--queries 200]
                               [--lance-index hnsw_sq|pq] [--threads N]
                               [--skip-throughput] [--skip-search]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

K = 10


# --- (a) throughput ----------------------------------------------------------------------------


def synthetic_chips(n: int, size: int = 256, bands: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth-ish uint8 chips with bright rectangles: cheap to make, not constant."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (n, bands, size // 16, size // 16), dtype=np.uint8)
    chips = np.repeat(np.repeat(coarse, 16, axis=2), 16, axis=3)
    for i in range(n):
        y, x = rng.integers(0, size - 40, 2)
        chips[i, :, y : y + 30, x : x + 40] = 230
    return np.ascontiguousarray(chips)


def vits16_random(folder: Path) -> Path:
    """A DINOv3 ViT-S/16 of the real shape (224 px, 384-d, 12 layers, 4 registers) with random
    weights, saved as a folder marked random: realistic compute without downloading weights."""
    import json

    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from flywheel_core.embed.dinov3 import RANDOM_WEIGHTS_KEY

    torch.manual_seed(0)
    DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4)).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config[RANDOM_WEIGHTS_KEY] = True
    config["_name_or_path"] = "dinov3-vits16-random-shape"
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def throughput(args: argparse.Namespace) -> None:
    from flywheel_core.embed.dinov3 import load_dinov3
    from flywheel_core.embed.embedder import bare_forward, embed_images, preprocess

    if args.model == "vits16-random":
        with tempfile.TemporaryDirectory(prefix="bench_vits16_") as tmp:
            dino = load_dinov3(str(vits16_random(Path(tmp))))
    else:
        dino = load_dinov3(None if args.model == "tiny" else args.model)
    chips = synthetic_chips(args.chips)
    batches = [
        preprocess(dino, chips[i : i + args.batch]) for i in range(0, len(chips), args.batch)
    ]
    print(
        f"\n(a) throughput: {dino.model_id} ({'trained' if dino.trained else 'RANDOM weights'}), "
        f"{dino.dim}-d, {dino.image_size} px input; {args.chips} chips "
        f"{'x'.join(map(str, chips.shape[1:]))} uint8, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}"
    )
    embed_images(dino, chips[: args.batch], batch_size=args.batch)  # warm-up
    t_embed, t_bare = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = embed_images(dino, chips, batch_size=args.batch)
        t_embed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for b in batches:
            bare_forward(dino, b)
        t_bare.append(time.perf_counter() - t0)
    assert len(out) == args.chips
    best_e, best_b = min(t_embed), min(t_bare)
    print(f"{'':38}{'seconds':>9}{'chips/s':>10}{'ratio':>8}")
    for label, t in (
        ("embed_images (whole path)", best_e),
        ("bare_forward on prepared batches", best_b),
    ):
        print(f"{label:38}{t:9.3f}{args.chips / t:10.1f}{t / best_b:8.3f}")
    print(f"overhead ratio embed_images / bare forward = {best_e / best_b:.3f}")


# --- (b) search --------------------------------------------------------------------------------


def mixture(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors from a Gaussian mixture, and `centres` to draw held-out queries from."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.5, 1.5, clusters).astype(np.float32)  # tight and loose clusters
    which = rng.integers(0, clusters, n)
    x = centres[which] + spread[which, None] * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), centres


def queries_from(centres: np.ndarray, m: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    which = rng.integers(0, len(centres), m)
    q = centres[which] + rng.uniform(0.5, 1.5, (m, 1)) * rng.standard_normal((m, dim))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def numpy_top(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    sims = x @ q
    part = np.argpartition(-sims, k)[:k]
    return part[np.argsort(-sims[part])]


def timed(fn: Callable[[np.ndarray], list[int]], queries: np.ndarray) -> tuple[np.ndarray, list]:
    fn(queries[0])  # warm caches (index pages, JIT paths)
    lat, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(fn(q))
        lat.append(time.perf_counter() - t0)
    return np.asarray(lat), found


def recall(found: list, truth: list) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def search(args: argparse.Namespace) -> None:
    import duckdb
    import lancedb
    from lancedb.index import IvfPq

    from flywheel_core.embed.table import _build as build_project_index
    from flywheel_core.embed.vss import build_hnsw, nearest

    clusters = max(10, args.n // 1000)
    t0 = time.perf_counter()
    x, centres = mixture(args.n, args.dim, clusters, args.seed)
    queries = queries_from(centres, args.queries, args.dim, args.seed)
    print(
        f"\n(b) search: {args.n:,} unit vectors of {args.dim} d ({clusters} clusters), "
        f"{args.queries} held-out queries, recall@{K} against exact numpy "
        f"(data made in {time.perf_counter() - t0:.1f} s)"
    )
    print(f"{'':34}{'build s':>9}{f'recall@{K}':>11}{'median ms':>11}{'p95 ms':>9}{'x numpy':>9}")
    base = 0.0

    def report(label: str, build: float | None, rec: float, lat: np.ndarray) -> None:
        med, p95 = float(np.median(lat)) * 1e3, float(np.percentile(lat, 95)) * 1e3
        b = f"{build:9.1f}" if build is not None else f"{'-':>9}"
        print(f"{label:34}{b}{rec:11.3f}{med:11.2f}{p95:9.2f}{med / base:9.2f}", flush=True)

    lat, truth = timed(lambda q: numpy_top(x, q).tolist(), queries)
    base = float(np.median(lat)) * 1e3
    report("numpy exact (baseline)", None, 1.0, lat)

    with tempfile.TemporaryDirectory(prefix="bench_embeddings_") as tmp:
        uids = np.arange(args.n)
        table = pa.table(
            {
                "id": pa.array(uids, pa.int64()),
                "uid": pa.array([f"v{i}" for i in uids]),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), args.dim),
            }
        )
        db = lancedb.connect(str(Path(tmp) / "lancedb"))
        tbl = db.create_table("vectors", table)

        def lance_exact(q: np.ndarray) -> list[int]:
            query = tbl.search(q).distance_type("cosine").bypass_vector_index()
            return query.select(["id", "_distance"]).limit(K).to_arrow().column("id").to_pylist()

        lat, found = timed(lance_exact, queries[: max(20, args.queries // 5)])
        report("LanceDB exact scan", None, recall(found, truth[: len(found)]), lat)
        t0 = time.perf_counter()
        if args.lance_index == "pq":
            config = IvfPq(distance_type="cosine", num_partitions=max(1, args.n // 4096))
            tbl.create_index("vector", config=config)
            kind = "IVF_PQ"
        else:  # exactly the index ensure_ann_index builds on dinov3_embeddings
            build_project_index(tbl, args.n)
            kind = "IVF_HNSW_SQ"
        build = time.perf_counter() - t0
        for refine in (None, 10):

            def lance_ann(q: np.ndarray, refine: int | None = refine) -> list[int]:
                query = tbl.search(q).distance_type("cosine").select(["id", "_distance"]).limit(K)
                if refine:
                    query = query.refine_factor(refine)
                return query.to_arrow().column("id").to_pylist()

            lat, found = timed(lance_ann, queries)
            label = f"LanceDB {kind}" + (f" + refine {refine}" if refine else "")
            report(label, build, recall(found, truth), lat)

        path = Path(tmp) / "export.parquet"
        pq.write_table(table.select(["uid", "vector"]), path)
        con = duckdb.connect()
        t0 = time.perf_counter()
        name = build_hnsw(con, str(path), args.dim, "cosine")
        build = time.perf_counter() - t0

        def vss(q: np.ndarray) -> list[int]:
            return [int(r["uid"][1:]) for r in nearest(con, name, q, K)]

        lat, found = timed(vss, queries)
        report("DuckDB vss HNSW", build, recall(found, truth), lat)
        con.close()

    print(
        "x numpy = median latency / numpy's; numpy scans all vectors in memory, the indexes "
        "trade recall for sublinear work (a win that grows with n)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="tiny",
        help="'tiny', 'vits16-random' (real ViT-S/16 shape, random weights) or a DINOv3 folder",
    )
    parser.add_argument("--chips", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lance-index", choices=("hnsw_sq", "pq"), default="hnsw_sq")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n <= K or args.queries < 1:
        parser.error(f"--n must exceed {K} and --queries must be positive")
    if not args.skip_throughput:
        throughput(args)
    if not args.skip_search:
        search(args)


if __name__ == "__main__":
    main()
