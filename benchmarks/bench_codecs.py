"""Codec benchmark: bytes and coding time of every codec on trained activations, side by side.

For each split, front + exit head are trained for ``--steps`` AdamW steps on the data (as the
edge trains them in a hierarchical run), and the activation of the next training batch (train
mode, as the edge sends it) is coded with every codec in the registry. Then the compressors are
compared on the same coded streams: zstd (level 1), zlib (level 1 and 6), lz4 (block), stored.

Times are the best of ``--reps`` on this machine (one thread). Ratios are against the fp32
codec's bytes. Run: ``python benchmarks/bench_codecs.py`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import platform
import time
import zlib
from collections.abc import Callable

import numpy as np
import torch

from edge_runtime.data.spec import load_dataset
from edge_runtime.link import entropy
from edge_runtime.link.codecs import BY_NAME, CODECS, decode_tensor, encode_tensor
from models import EdgeNet, build_exit_head, build_model

MB = 1e6


def trained_activation(
    model: str, split: int, steps: int, data: str, batch_size: int, seed: int = 0
) -> np.ndarray:
    """The activation the edge sends after ``steps`` training steps of front + exit head."""
    torch.manual_seed(seed)
    ds = load_dataset(data, seed=seed)
    m = build_model(model, input_shape=ds.x_train.shape[1:], num_classes=ds.num_classes)
    net = EdgeNet(m.front(split), build_exit_head(m.activation_shape(split), ds.num_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    mean = ds.mean.reshape(1, -1, 1, 1).astype(np.float32)
    std = ds.std.reshape(1, -1, 1, 1).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(ds.y_train))
    net.train()
    for step in range(steps + 1):
        idx = order[np.arange(step * batch_size, (step + 1) * batch_size) % len(order)]
        x = torch.from_numpy((ds.x_train[idx].astype(np.float32) / 255 - mean) / std)
        y = torch.from_numpy(ds.y_train[idx].astype(np.int64))
        logits, activation = net(x)
        if step == steps:
            return activation.detach().numpy().copy()
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    raise AssertionError("unreachable")


def best_of(fn: Callable[[], object], reps: int) -> tuple[object, float]:
    """(result, best wall time in seconds over ``reps`` calls)."""
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def codec_rows(x: np.ndarray, reps: int) -> list[tuple[str, float, float, float, float]]:
    """Per codec: (name, bytes ratio vs fp32, encode ms, decode ms, relative error)."""
    fp32 = len(encode_tensor(x, "fp32"))
    norm = float(np.linalg.norm(x))
    rows = []
    for codec in CODECS:
        buf, enc = best_of(lambda c=codec: encode_tensor(x, c), reps)
        y, dec = best_of(lambda b=buf: decode_tensor(b), reps)
        err = float(np.linalg.norm(x - y)) / norm
        rows.append((codec, len(buf) / fp32, enc * 1e3, dec * 1e3, err))
    return rows


def compressor_rows(x: np.ndarray, reps: int) -> list[tuple[str, str, float, float, float]]:
    """Per coded codec and compressor: (codec, compressor, ratio vs fp32, enc MB/s, dec MB/s).

    MB/s count the fp32 tensor's bytes per second, so rows compare as throughput on the edge.
    The layout (sparse or dense) is the codec's choice; lz4 and zlib-6 compress the same stream,
    and their times include forming and unforming it (the stored codec's time).
    """
    try:
        import lz4.block as lz4
    except ImportError:
        lz4 = None
    fp32 = x.nbytes
    rows = []
    for codec in (c for c in CODECS if BY_NAME[c].coded):
        for comp in ("zstd", "zlib", "stored"):
            buf, enc = best_of(lambda c=codec, k=comp: encode_tensor(x, c, k), reps)
            _, dec = best_of(lambda b=buf: decode_tensor(b), reps)
            label = {"zstd": "zstd-1", "zlib": "zlib-1"}.get(comp, comp)
            rows.append((codec, label, len(buf) / fp32, fp32 / enc / MB, fp32 / dec / MB))
        # The same stream through zlib-6 and lz4: what the stored form carries after its head.
        stored, t_form = best_of(lambda c=codec: encode_tensor(x, c, "stored"), reps)
        _, t_unform = best_of(lambda b=stored: decode_tensor(b), reps)
        head = len(stored) - _stream_len(stored, codec, x)
        stream = stored[head:]
        size = len(stream)
        extra: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = [
            ("zlib-6", lambda s: zlib.compress(s, 6), zlib.decompress)
        ]
        if lz4 is not None:
            extra.append(
                (
                    "lz4",
                    lambda s: lz4.compress(s, store_size=False),
                    lambda p, n=size: lz4.decompress(p, uncompressed_size=n),
                )
            )
        for label, comp_fn, decomp_fn in extra:
            packed, t = best_of(lambda f=comp_fn, s=stream: f(s), reps)
            _, td = best_of(lambda f=decomp_fn, p=packed: f(p), reps)
            ratio = (head + len(packed)) / fp32
            enc_rate, dec_rate = fp32 / (t_form + t) / MB, fp32 / (t_unform + td) / MB
            rows.append((codec, label, ratio, enc_rate, dec_rate))
    if lz4 is None:
        rows.append(("(lz4)", "not installed: pip install lz4", float("nan"), 0.0, 0.0))
    return rows


def _stream_len(stored: bytes, codec: str, x: np.ndarray) -> int:
    """Bytes of the (uncompressed) stream at the end of a stored coded tensor."""
    count, k = x.size, BY_NAME[codec].wire.itemsize
    bits = encode_tensor(x, codec.removesuffix("+z"))  # same elements, uncoded
    elements = np.frombuffer(bits[len(bits) - count * k :], dtype=f"u{k}")
    nonzero = int(np.count_nonzero(elements))
    layout = entropy.SPARSE if entropy.sparse_wins(count, nonzero, k) else entropy.DENSE
    return entropy.inflated_size(count, k, layout, nonzero)


def main() -> None:
    """Train, code, print the two tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--splits", default="4,6,8")
    parser.add_argument("--steps", type=int, default=30, help="training steps before coding")
    parser.add_argument("--data", default="synthetic:1200")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    splits = [int(s) for s in args.splits.split(",")]
    print(
        f"bench_codecs: {args.model}, splits {args.splits}, activations after {args.steps} "
        f"training steps (batch {args.batch_size}, {args.data}); best of {args.reps}; "
        f"{platform.machine()}, {entropy.compressor_name()} installed"
    )
    acts = {}
    for split in splits:
        t0 = time.perf_counter()
        acts[split] = trained_activation(args.model, split, args.steps, args.data, args.batch_size)
        x = acts[split]
        print(
            f"  split {split}: activation {tuple(x.shape)}, {x.nbytes / MB:.2f} MB fp32, "
            f"{np.mean(x == 0):.0%} zeros (trained in {time.perf_counter() - t0:.0f} s)"
        )
    print("\nCodecs: bytes vs fp32 | encode ms | decode ms | relative error")
    header = f"{'codec':<8}" + "".join(f"{'split ' + str(s):>34}" for s in splits)
    print(header)
    table = {s: codec_rows(acts[s], args.reps) for s in splits}
    for i, codec in enumerate(CODECS):
        cells = []
        for s in splits:
            _, ratio, enc, dec, err = table[s][i]
            cells.append(f"{ratio:>8.3f} {enc:>7.2f} {dec:>7.2f} {err:>9.1e}")
        print(f"{codec:<8}" + "".join(f"{c:>34}" for c in cells))
    print("\nCompressors on the same coded stream: ratio vs fp32 | encode MB/s | decode MB/s")
    print(f"{'codec':<8}{'compressor':<11}" + "".join(f"{'split ' + str(s):>24}" for s in splits))
    comp = {s: compressor_rows(acts[s], args.reps) for s in splits}
    for i, (codec, label, *_rest) in enumerate(comp[splits[0]]):
        cells = []
        for s in splits:
            _, _, ratio, enc, dec = comp[s][i]
            cells.append(f"{ratio:>7.3f} {enc:>7.0f} {dec:>7.0f}")
        print(f"{codec:<8}{label:<11}" + "".join(f"{c:>24}" for c in cells))
    raw = {s: len(zlib.compress(acts[s].tobytes(), 6)) / acts[s].nbytes for s in splits}
    print(
        "\nFor reference, zlib-6 of the raw fp32 bytes (no layout, no byte planes): "
        + ", ".join(f"split {s} {r:.3f}" for s, r in raw.items())
    )


if __name__ == "__main__":
    main()
