"""Hostile ``.cat`` files against ``copycat info``, ``catfile.load_cat`` and ``copycat infer`` (issue #21).

    .venv/bin/python benchmarks/robustness.py                    # 600 files, seed 0, prints JSON
    .venv/bin/python benchmarks/robustness.py --files 2000 --seed 7 --memory-gb 3 --timeout 30

A seeded generator mutates a tiny valid model and a tiny valid checkpoint into hostile files: truncated
and bit-flipped archives, bad manifests (missing keys, wrong types, unknown architectures and transfers,
NaN parameters, newer versions, YAML tags, anchors, alias bombs, deep nesting, non-UTF-8), lying
safetensors headers (lengths, offsets, dtypes, gigantic declared shapes), NaN/Inf and overflowing weights,
pickles, zip bombs, path-traversal and duplicate member names, encrypted or oddly compressed members,
oversized or mis-shaped resume state, random bytes. Each file goes through each target in a worker
process under ``resource.setrlimit(RLIMIT_AS)`` (``--memory-gb``), one file at a time under an alarm
(``--timeout``); a worker that dies is restarted after the file that killed it (counted as a crash).

Outcomes per target:

* ``clean``: refused with a CatFileError (API) / exit status ≠ 0 and one ``copycat: error:`` line, no
  traceback (CLI); ``accepted``: the file is valid (a mutation that changed nothing that matters), and for
  ``infer`` every output pixel is finite;
* ``crash``: any other exception, a traceback, a multi-line error, a dead worker or a MemoryError;
  ``nan_output``: ``infer`` exited 0 but wrote NaN/Inf; ``hang``: the alarm fired, or the worker went
  silent past it (stuck in native code) and was killed.

``rss_peak_mb`` is the workers' peak RSS (``VmHWM``, torch included; ``rss_baseline_mb`` is a worker's
before its first file) and ``rss_growth_max_mb`` the most one file raised it.

The kill -9 + resume cycles and the training soak are **added with the trainer work** (they need the
trainer, being split into a package now); the JSON says so and has no numbers for them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import pickle
import queue as queues
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = ("info", "load_cat", "infer")


# ------------------------------------------------------------------------------------------- the files


def _base_files(directory: Path) -> tuple[Path, Path]:
    """A tiny valid model and a tiny valid checkpoint (width-4 Small MSRN, one Adam step)."""
    import torch

    from copycat_nuke import catfile
    from copycat_nuke.models import MSRN, msrn_arguments
    from copycat_nuke.transfer import Transfer

    torch.manual_seed(0)
    arguments = {**msrn_arguments("small"), "width": 4}
    network = MSRN(**arguments)
    torch.nn.init.normal_(network.out.weight, std=0.05)
    manifest = catfile.Manifest(
        "msrn",
        arguments,
        ["R", "G", "B"],
        ["R", "G", "B"],
        Transfer().to_dict(),
        training={"steps": 1, "input": "in.####.exr", "target": "gt.####.exr"},
    )
    model = catfile.save_cat(directory / "base_model.cat", manifest, network.state_dict())
    optimizer = torch.optim.Adam(network.parameters())
    network(torch.rand(1, 3, 16, 16)).mean().backward()
    optimizer.step()
    resume = catfile.ResumeState(step=1, optimizer=optimizer.state_dict(), rng={"torch": torch.get_rng_state()})
    checkpoint = catfile.save_cat(directory / "base_checkpoint.cat", manifest, network.state_dict(), resume)
    return model, checkpoint


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: list[tuple[str, bytes]] | dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _split_safetensors(blob: bytes) -> tuple[dict[str, Any], bytes]:
    length = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + length]), blob[8 + length :]


def _manifest_mutations(rng: random.Random, text: str) -> list[tuple[str, str]]:
    """(name, manifest text) pairs, each breaking the manifest one way."""
    import yaml

    data = yaml.safe_load(text)
    key = rng.choice(sorted(data))
    deep = "config: " + "[" * 5000 + "]" * 5000 + "\n"
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    choices = {
        "missing_key": {k: v for k, v in data.items() if k != key},
        "wrong_type": {**data, key: rng.choice([[1, 2], "text", 3.5, None, {"x": 1}, True])},
        "unknown_arch": {**data, "architecture": rng.choice(["resnet", "", "../msrn", "msrn\x00"])},
        "huge_argument": {**data, "arguments": {**data["arguments"], "width": rng.choice([10**6, 2**40, -3, 0])}},
        "huge_levels": {**data, "arguments": {**data["arguments"], "levels": rng.choice([64, 10**9])}},
        "evil_transfer": {**data, "transfer": {"name": rng.choice(["evil", "slog; rm -rf", ""])}},
        "nan_transfer": {**data, "transfer": {"name": "slog", "params": {"a": float("nan")}}},
        "inf_transfer": {**data, "transfer": {"name": "slog", "params": {"k": float("inf")}}},
        "channel_count": {**data, "channels_in": ["R"] * rng.randint(0, 9)},
        "long_channel": {**data, "channels_out": ["R", "G", "B" * 10_000]},
        "scale": {**data, "scale": rng.choice([0, 9, 2**70, 2.5, "2"])},
        "newer": {**data, "format_version": rng.choice([2, 99, 2**80])},
        "kind": {**data, "kind": rng.choice(["checkpoint", "pickle", ""])},
        "unknown_key": {**data, rng.choice(["exec", "__class__", "python"]): 1},
    }
    name = rng.choice(sorted(choices))
    out = [(f"manifest_{name}", yaml.safe_dump(choices[name]))]
    raw = [
        ("manifest_tag", text.replace("kind: model", "kind: !!python/object/apply:os.system [echo pwned]")),
        ("manifest_str_tag", text.replace("kind: model", "kind: !!str model")),
        ("manifest_anchor", text + "extra: &a {x: 1}\n"),
        ("manifest_alias_bomb", "\n".join(laughs) + "\n"),
        ("manifest_deep", text + deep),
        ("manifest_not_utf8", text.replace("kind", "k\xffind").encode("latin-1").decode("latin-1")),
        ("manifest_big_int", text + "junk: " + "9" * 100_000 + "\n"),
        ("manifest_not_mapping", "- just\n- a list\n"),
        ("manifest_empty", ""),
    ]
    return [*out, rng.choice(raw)]


def _weights_mutations(rng: random.Random, blob: bytes) -> list[tuple[str, bytes]]:
    """(name, weights.safetensors bytes) pairs: lying headers, NaN/Inf, huge shapes."""
    import numpy as np

    header, data = _split_safetensors(blob)
    names = [name for name in header if name != "__metadata__"]
    victim = rng.choice(names)
    mutations: list[tuple[str, bytes]] = []
    lying = json.loads(json.dumps(header))
    lying[victim]["shape"] = [rng.choice([2**20, 2**31, 10**12]), *lying[victim]["shape"][1:]]
    mutations.append(("weights_huge_shape", _safetensors(lying, data)))
    offsets = json.loads(json.dumps(header))
    begin, end = offsets[victim]["data_offsets"]
    offsets[victim]["data_offsets"] = [begin, end + rng.choice([4, 1 << 30, -4])]
    mutations.append(("weights_bad_offsets", _safetensors(offsets, data)))
    dtype = json.loads(json.dumps(header))
    dtype[victim]["dtype"] = rng.choice(["I64", "U8", "BOOL", "F128", "object", "F8_E4M3"])
    mutations.append(("weights_bad_dtype", _safetensors(dtype, data)))
    mutations.append(("weights_header_length", struct.pack("<Q", rng.choice([2**63, 2**40, 0, 7])) + blob[8:]))
    mutations.append(("weights_header_not_json", struct.pack("<Q", 16) + b"{not json at all" + data))
    extra = json.loads(json.dumps(header))
    extra["huge_extra"] = {"dtype": "F32", "shape": [2**28], "data_offsets": [len(data), len(data) + 2**30]}
    mutations.append(("weights_extra_tensor", _safetensors(extra, data)))
    values = np.frombuffer(data, dtype=np.float32).copy()
    kind = rng.choice(["nan", "inf", "one", "1e10", "1e38", "some_nan"])
    if kind == "some_nan":
        values[rng.randrange(len(values))] = np.nan
    else:
        values[:] = {"nan": np.nan, "inf": np.inf, "one": 1.0, "1e10": 1e10, "1e38": 1e38}[kind]
    mutations.append((f"weights_{kind}", _safetensors(header, values.tobytes())))
    return [rng.choice(mutations), rng.choice(mutations)]


def _resume_mutations(rng: random.Random, members: dict[str, bytes]) -> list[tuple[str, dict[str, bytes]]]:
    """Checkpoint members with oversized, lying or mis-shaped resume state."""
    header, data = _split_safetensors(members["resume.safetensors"])
    names = [name for name in header if name != "__metadata__" and name.endswith("exp_avg")]
    victim = rng.choice(names)
    out = []
    big = 1 << rng.choice([24, 26, 28])  # 16 MB .. 256 MB of zeros, deflated to almost nothing
    padded = json.loads(json.dumps(header))
    padded["extra/blob"] = {"dtype": "F32", "shape": [big // 4], "data_offsets": [len(data), len(data) + big]}
    yaml_text = members["resume.yaml"].decode().replace("extra: {}", "extra: {blob: {__tensor__: extra/blob}}")
    out.append(
        (
            "resume_oversized",
            {
                **members,
                "resume.yaml": yaml_text.encode(),
                "resume.safetensors": _safetensors(padded, data + bytes(big)),
            },
        )
    )
    shaped = json.loads(json.dumps(header))
    shaped[victim]["shape"] = [1]
    begin = shaped[victim]["data_offsets"][0]
    size = shaped[victim]["data_offsets"][1] - begin
    rest = {k: v for k, v in shaped.items() if k != "__metadata__"}
    # keep the tiling honest (shrink the victim, shift the others) so only the shape is wrong
    for entry in rest.values():
        if entry["data_offsets"][0] > begin:
            entry["data_offsets"] = [entry["data_offsets"][0] - size + 4, entry["data_offsets"][1] - size + 4]
    shaped[victim]["data_offsets"] = [begin, begin + 4]
    trimmed = data[:begin] + data[begin : begin + 4] + data[begin + size :]
    out.append(("resume_wrong_shape", {**members, "resume.safetensors": _safetensors(shaped, trimmed)}))
    rng_state = json.loads(json.dumps(header))
    rng_state["rng/torch"]["dtype"] = "I8"
    out.append(("resume_rng_dtype", {**members, "resume.safetensors": _safetensors(rng_state, data)}))
    out.append(
        (
            "resume_yaml_bad",
            {**members, "resume.yaml": rng.choice([b"step: -1\n", b"[", b"step: !!float 1\n", b"\xff\xfe"])},
        )
    )
    return [rng.choice(out)]


def generate(directory: Path, count: int, seed: int) -> list[tuple[str, Path]]:
    """``count`` hostile files in ``directory``: ``[(category, path), ...]``, the same for the same seed."""
    rng = random.Random(seed)
    model, checkpoint = _base_files(directory)
    model_bytes, model_members = model.read_bytes(), _members(model)
    checkpoint_members = _members(checkpoint)
    made: list[tuple[str, Path]] = []

    def add(category: str, data: bytes) -> None:
        path = directory / f"{len(made):05d}_{category}.cat"
        path.write_bytes(data)
        made.append((category, path))

    def ordered(members: dict[str, bytes]) -> list[tuple[str, bytes]]:
        return sorted(members.items(), key=lambda item: item[0] != "manifest.yaml")

    def truncated() -> None:
        add("truncated", model_bytes[: rng.randrange(0, len(model_bytes))])

    def flipped() -> None:
        data = bytearray(model_bytes)
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        add("bit_flips", bytes(data))

    def manifest() -> None:
        text = model_members["manifest.yaml"].decode()
        for name, body in _manifest_mutations(rng, text):
            encoded = body.encode("latin-1") if name == "manifest_not_utf8" else body.encode()
            add(name, _zip(ordered({**model_members, "manifest.yaml": encoded})))

    def weights() -> None:
        for name, blob in _weights_mutations(rng, model_members["weights.safetensors"]):
            add(name, _zip(ordered({**model_members, "weights.safetensors": blob}), zipfile.ZIP_STORED))

    def resume() -> None:
        for name, members in _resume_mutations(rng, checkpoint_members):
            add(name, _zip(ordered(members)))

    def pickles() -> None:
        payload = pickle.dumps({"weights": [1, 2, 3]}, protocol=rng.choice([2, 4, 5]))
        if rng.random() < 0.5:
            add("pickle", payload)
        else:
            add("torch_save_zip", _zip([("archive/data.pkl", payload), ("archive/version", b"3\n")]))

    def bomb() -> None:
        size = rng.choice([64 << 20, 256 << 20])
        member = rng.choice(["weights.safetensors", "manifest.yaml", "preview.png", "resume.safetensors"])
        add(f"zip_bomb_{member.split('.')[0]}", _zip(ordered({**model_members, member: bytes(size)})))

    def traversal() -> None:
        name = rng.choice(["../evil.txt", "/etc/evil", "..\\evil", "a/../../evil", "weights.safetensors/", "x" * 300])
        add("path_traversal", _zip(ordered({**model_members, name: b"evil"})))

    def many() -> None:
        members = ordered(model_members) + [(f"junk{i}", b"") for i in range(rng.choice([17, 1000, 20000]))]
        add("many_members", _zip(members, zipfile.ZIP_STORED))

    def duplicate() -> None:
        members = ordered(model_members)
        add("duplicate_member", _zip([*members, ("manifest.yaml", b"format_version: 1\n")]))

    def odd_method() -> None:
        data = bytearray(_zip(ordered(model_members), zipfile.ZIP_STORED))
        # the local and central headers' method (offset 8 / 10) or flags (6 / 8) of the first member
        at = data.find(b"PK\x01\x02")
        if rng.random() < 0.5:
            data[at + 10 : at + 12] = struct.pack("<H", rng.choice([12, 14, 99]))
            add("compression_method", bytes(data))
        else:
            data[at + 8 : at + 10] = struct.pack("<H", 1)
            add("encrypted", bytes(data))

    def lying_directory() -> None:
        data = bytearray(_zip(ordered(model_members)))
        at = data.find(b"PK\x01\x02")
        data[at + 24 : at + 28] = struct.pack("<I", rng.choice([2**32 - 1, 2**31, 10**9]))  # uncompressed size
        add("lying_zip_size", bytes(data))

    def noise() -> None:
        add("random_bytes", rng.randbytes(rng.choice([0, 1, 22, 4096, 1 << 16])))

    def preview() -> None:
        add("bad_preview", _zip(ordered({**model_members, "preview.png": rng.randbytes(512)})))

    def compressed_crc() -> None:
        blob = bytearray(_zip(ordered(model_members)))
        blob[-30] ^= 0xFF
        add("damaged_directory", bytes(blob))

    generators: list[Callable[[], None]] = [
        truncated,
        flipped,
        manifest,
        weights,
        resume,
        pickles,
        bomb,
        traversal,
        many,
        duplicate,
        odd_method,
        lying_directory,
        noise,
        preview,
        compressed_crc,
    ]
    while len(made) < count:
        rng.choice(generators)()
    return made[:count] if len(made) > count else made


# ------------------------------------------------------------------------------------------ the worker


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm


def _cli(argv: list[str]) -> tuple[int, str, str]:
    from copycat_nuke.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _cli_outcome(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        return "accepted"
    if "Traceback" in err or len(lines) != 1 or not lines[0].startswith("copycat: error: "):
        return "crash"
    if lines[0].startswith(("copycat: error: unexpected ", "copycat: error: out of memory")):
        return "crash"  # the catch-all caught it: a clean line, but not a refusal the reader made
    return "clean"


def _check_one(target: str, path: Path, plate: str, out_dir: Path) -> tuple[str, str]:
    from copycat_nuke import catfile, imageio
    from copycat_nuke.errors import CatFileError

    if target == "load_cat":
        try:
            catfile.load_cat(path)
        except CatFileError as error:
            return "clean", str(error)[:160]
        return "accepted", ""
    if target == "info":
        code, _, err = _cli(["info", str(path)])
        return _cli_outcome(code, err), err.strip()[:160]
    output = out_dir / path.stem / "o.####.exr"
    code, _, err = _cli(["infer", str(path), plate, str(output), "--quiet", "--device", "cpu", "--tile", "0"])
    outcome = _cli_outcome(code, err)
    if outcome == "accepted":
        import numpy as np

        for frame in sorted(output.parent.glob("o.*.exr")):
            if not np.isfinite(imageio.read_frame(frame).pixels).all():
                return "nan_output", str(frame)
    return outcome, err.strip()[:160]


def _peak_rss_kb() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` (per address space, so not the parent's peak, which
    ``ru_maxrss`` carries across fork and exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _worker(jobs: list[tuple[str, str]], plate: str, out_dir: str, memory_gb: float, timeout: int, queue: Any) -> None:
    if memory_gb > 0:
        limit = int(memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    import warnings

    warnings.simplefilter("ignore")
    for target, name in jobs:
        before = _peak_rss_kb()
        signal.alarm(timeout)
        try:
            outcome, detail = _check_one(target, Path(name), plate, Path(out_dir))
        except _Alarm:
            outcome, detail = "hang", f"over {timeout} s"
        except BaseException as error:
            outcome, detail = "crash", f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
        finally:
            signal.alarm(0)
        after = _peak_rss_kb()
        queue.put((target, name, outcome, detail, after // 1024, (after - before) // 1024, before // 1024))
    queue.put(None)


def run(count: int, seed: int, memory_gb: float, timeout: int) -> dict[str, Any]:
    import numpy as np

    from copycat_nuke import imageio

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="copycat-robustness-") as temporary:
        root = Path(temporary)
        (root / "files").mkdir()
        files = generate(root / "files", count, seed)
        rng = np.random.default_rng(seed)
        for number in (1, 2):
            imageio.write_frame(root / f"plate.{number:04d}.exr", rng.random((32, 32, 3), dtype=np.float32))
        plate = str(root / "plate.####.exr")
        category = {str(path): kind for kind, path in files}
        results: dict[str, dict[str, Any]] = {
            target: {"clean": 0, "accepted": 0, "crash": 0, "hang": 0, "nan_output": 0, "examples": {}}
            for target in TARGETS
        }
        rss_peak = rss_growth = 0
        baseline = 1 << 40
        # spawn, not fork: this process has run torch and OpenImageIO, whose thread pools a forked child can
        # inherit mid-lock (a deadlock that would read as a hang of the file being checked)
        context: Any = multiprocessing.get_context("spawn")
        for target in TARGETS:
            pending = [(target, str(path)) for _, path in files]
            while pending:
                queue = context.Queue()
                worker = context.Process(
                    target=_worker, args=(pending, plate, str(root / "out"), memory_gb, timeout, queue)
                )
                worker.start()
                done = 0
                last = time.monotonic() + 120  # the first item waits for the worker's imports too
                while True:
                    try:
                        item = queue.get(timeout=5)
                        last = time.monotonic()
                    except queues.Empty:
                        if worker.is_alive() and time.monotonic() - last < timeout + 30:
                            continue
                        # dead: a native crash or the OOM killer; silent past the alarm: stuck in native code
                        item = "dead" if not worker.is_alive() else "stuck"
                        worker.kill()
                    if item is None:
                        pending = []
                        break
                    bucket = results[target]
                    if item in ("dead", "stuck"):
                        _, name = pending[done]
                        outcome = "crash" if item == "dead" else "hang"
                        bucket[outcome] += 1
                        bucket["examples"].setdefault(outcome, []).append(f"{Path(name).name}: worker {item}")
                        bucket.setdefault("by_category", Counter())[f"{category[name]}:{outcome}"] += 1
                        pending = pending[done + 1 :]
                        break
                    _, name, outcome, detail, peak, growth, start = item
                    baseline = min(baseline, start)
                    done += 1
                    bucket[outcome] += 1
                    if outcome not in ("clean", "accepted") and len(bucket["examples"].get(outcome, [])) < 5:
                        bucket["examples"].setdefault(outcome, []).append(f"{Path(name).name}: {detail}")
                    rss_peak, rss_growth = max(rss_peak, peak), max(rss_growth, growth)
                    bucket.setdefault("by_category", Counter())[f"{category[name]}:{outcome}"] += 1
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.kill()
        for bucket in results.values():
            bucket["by_category"] = dict(sorted(bucket.get("by_category", Counter()).items()))
            bucket["not_clean"] = bucket["crash"] + bucket["hang"] + bucket["nan_output"]
    return {
        "benchmark": "robustness",
        "seed": seed,
        "files": len(files),
        "categories": dict(sorted(Counter(kind for kind, _ in files).items())),
        "memory_limit_gb": memory_gb,
        "timeout_s": timeout,
        "targets": results,
        "rss_peak_mb": rss_peak,
        "rss_baseline_mb": baseline,
        "rss_growth_max_mb": rss_growth,
        "seconds": round(time.perf_counter() - started, 1),
        "kill9_resume_cycles": "added with the trainer work",
        "soak": "added with the trainer work",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=600, help="hostile files to generate (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=3.0, help="address-space limit per worker (0: none)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per file and target before a hang")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(run(args.files, args.seed, args.memory_gb, args.timeout), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
