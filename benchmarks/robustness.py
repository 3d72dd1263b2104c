"""Hostile ``.cat`` files against ``copycat info``, ``catfile.load_cat`` and ``copycat infer``; ``kill -9`` +
resume cycles and a soak of ``copycat train`` (issue #21).

    .venv/bin/python benchmarks/robustness.py                    # 600 files, 20 kills, 10,000-step soak; JSON
    .venv/bin/python benchmarks/robustness.py --files 2000 --seed 7 --memory-gb 3 --timeout 30
    .venv/bin/python benchmarks/robustness.py --skip-hostile --kill-cycles 20 --soak-steps 4000

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

``kill9_resume_cycles`` (``--kill-cycles``, 0: none): an uninterrupted reference ``copycat train`` (Small,
crop 32, batch 2, fp32, seed 3, 200 steps, a checkpoint every 5 and a contact sheet every 10 steps, three
32×48 pairs), then the same job in another ``--out``, killed with SIGKILL after seeded random steps (a
random part of a step after its progress line, so kills land inside checkpoint writes too; some during
a resumed run's start-up) and resumed with ``--resume`` until it finishes. Checked: ``loss.csv`` holds
every step once, its step, loss and learning-rate text equal the reference's, ``model.cat``'s tensors
equal the reference's (``torch.equal``), and no ``.*tmp*`` file or ``.copycat-train.lock`` is left in
the run, checkpoints/ or contact_sheets/. Each kill leaves the lock behind; the next run takes it over
with a warning, counted as ``lock_takeovers_warned``. ``killed_before_first_checkpoint`` records what
``--resume`` and a plain restart say about a run killed before its first checkpoint.

``soak`` (``--soak-steps``, 0: none): one ``copycat train`` of that many steps (Small, crop 16, batch 1,
fp32, a checkpoint and contact sheet every tenth of the run, at most 1000 steps apart), its ``VmRSS``
sampled twice a second: RSS at 10% of the steps and at the last step before the finish, growth %,
steps/s, and no leftovers. ``--skip-hostile`` runs only these two.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
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
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

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
    }


# ------------------------------------------------------------------------------ the trainer: kill -9, soak

#: leftovers a run directory must not keep: temporary files of atomic writes, and the run lock
_LEFTOVER_PLACES = (".", "checkpoints", "contact_sheets")


def _tiny_pairs(directory: Path, frames: int = 3, size: tuple[int, int] = (32, 48), seed: int = 0) -> tuple[str, str]:
    """Input of smooth random colour, Ground Truth = a colour gain plus a painted-out square (as the tests'
    ``write_pairs``; not imported from tests/, which is no package)."""
    import numpy as np

    from copycat_nuke import imageio

    rng = np.random.default_rng(seed)
    height, width = size
    for frame in range(1, frames + 1):
        image = rng.random((height // 8, width // 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
        truth = image * np.array([0.8, 1.0, 1.2], np.float32)
        truth[8:16, 8:16] = 0.5
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def _train_argv(pairs: tuple[str, str], out: Path, steps: int, **options: Any) -> list[str]:
    argv = [sys.executable, "-m", "copycat_nuke.cli", "train", "--input", pairs[0], "--target", pairs[1]]
    argv += ["--out", str(out), "--steps", str(steps), "--model-size", "small", "--precision", "fp32"]
    argv += ["--device", "cpu", "--quiet"]
    for name, value in options.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    return argv


def _launch(argv: list[str], events: Path, stderr: Path) -> subprocess.Popen[bytes]:
    # one torch thread: on a shared 2-core machine a second OpenMP thread only makes tiny ops wait
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [*argv, "--events", str(events)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def _read_events(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of an events file written so far (a line being written is left for later)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def _last_step(events: list[dict[str, Any]]) -> Optional[int]:
    steps = [event["step"] for event in events if event.get("event") == "StepDone"]
    return steps[-1] if steps else None


def _leftovers(run: Path) -> list[str]:
    found = [str(path.relative_to(run)) for place in _LEFTOVER_PLACES for path in (run / place).glob(".*tmp*")]
    if (run / ".copycat-train.lock").exists():
        found.append(".copycat-train.lock")
    return sorted(found)


def _loss_rows(path: Path) -> list[tuple[str, str, str]]:
    """loss.csv's (step, loss, learning_rate) as written: the seconds column is wall time, never repeatable."""
    with path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    return [(row[0], row[1], row[2]) for row in rows[1:]]


def _weights_differ(model: Path, reference: Path) -> list[str]:
    import torch

    from copycat_nuke import catfile

    mine, theirs = catfile.load_cat(model).weights, catfile.load_cat(reference).weights
    if mine.keys() != theirs.keys():
        return [f"tensor names differ: {sorted(mine.keys() ^ theirs.keys())[:5]}"]
    return [name for name in sorted(mine) if not torch.equal(mine[name], theirs[name])]


def _killed_before_first_checkpoint(root: Path, pairs: tuple[str, str], steps: int) -> dict[str, Any]:
    """A run killed before it wrote a checkpoint, then ``--resume``, then started again without it: what the
    user is told (it holds config.yaml and loss.csv, so it is a run, but there is nothing to resume)."""
    run = root / "no_checkpoint"
    argv = _train_argv(pairs, run, steps, crop_size=32, batch_size=2, seed=3, checkpoint_interval=steps)
    process = _launch(argv, root / "nc.events", root / "nc.err")
    deadline = time.monotonic() + 120
    while not any(e.get("event") == "StepDone" for e in _read_events(root / "nc.events")):
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    process.kill()
    process.wait()
    outcome: dict[str, Any] = {}
    for name, extra in (("resume", ["--resume"]), ("restart", [])):
        done = subprocess.run(
            [*argv, *extra],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=300,
            check=False,
        )
        errors = [line for line in done.stderr.splitlines() if line.startswith("copycat: error:")]
        outcome[name] = {"exit": done.returncode, "error": errors[-1] if errors else ""}
    return outcome


def kill_cycles(cycles: int, seed: int, steps: int = 200, interval: int = 5) -> dict[str, Any]:
    """An uninterrupted reference run, then the same job killed with SIGKILL ``cycles`` times (after seeded
    random steps, or during start-up) and resumed with ``--resume`` until it finishes; the two must agree."""
    rng = random.Random(seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="copycat-kill9-") as temporary:
        root = Path(temporary)
        pairs = _tiny_pairs(root)
        options = {"crop_size": 32, "batch_size": 2, "seed": 3, "checkpoint_interval": interval, "image_interval": 10}
        reference = root / "reference"
        clock = time.perf_counter()
        process = _launch(_train_argv(pairs, reference, steps, **options), root / "ref.events", root / "ref.err")
        if process.wait(timeout=1800) != 0:
            raise RuntimeError(f"the reference run failed: {(root / 'ref.err').read_text()[-2000:]}")
        reference_seconds = time.perf_counter() - clock
        finished = _read_events(root / "ref.events")[-1]
        step_seconds = finished["seconds"] / steps
        startup_seconds = max(0.5, reference_seconds - finished["seconds"])

        run = root / "killed"
        argv = _train_argv(pairs, run, steps, **options)
        # kill targets: distinct steps spread over the run, in order; some kills land in start-up instead
        # (lock, config.yaml, loss.csv truncation, checkpoint loading) once a checkpoint exists to resume
        targets = sorted(rng.sample(range(1, steps), min(cycles, steps - 1)))
        records: list[dict[str, Any]] = []
        takeovers = launches = 0
        finished_early = False
        while True:
            launch = launches
            launches += 1
            events, stderr = root / f"{launch}.events", root / f"{launch}.err"
            resume = launch > 0
            process = _launch([*argv, "--resume"] if resume else argv, events, stderr)
            clock = time.perf_counter()
            record: dict[str, Any] = {}
            if len(records) < cycles and not finished_early:
                startup = resume and rng.random() < 0.15
                target = targets[len(records)] if len(records) < len(targets) else steps - 1
                deadline = time.monotonic() + 600
                if startup:
                    time.sleep(rng.uniform(0.0, startup_seconds))
                else:
                    while process.poll() is None and time.monotonic() < deadline:
                        seen = _read_events(events)
                        last = _last_step(seen)
                        # the first kill waits for a checkpoint: without one there is nothing to resume
                        # (that case is probed on its own: killed_before_first_checkpoint)
                        ready = resume or any(e.get("event") == "CheckpointWritten" for e in seen)
                        if last is not None and last >= target and ready:
                            break
                        time.sleep(0.01)
                    # StepDone lines come at most every 0.25 s: a random part of a step more, so kills also
                    # land inside checkpoint and contact-sheet writes
                    time.sleep(rng.uniform(0.0, step_seconds))
                if process.poll() is None:
                    process.kill()
                    process.wait()
                    seen = _read_events(events)
                    start = [e["start_step"] for e in seen if e.get("event") == "Started"]
                    left = _leftovers(run)
                    record = {
                        "target_step": None if startup else target,
                        "killed_in": "start-up" if not start else "training",
                        "resumed_from": start[0] if start else None,
                        "last_step_seen": _last_step(seen),  # StepDone lines are throttled to 4 a second
                        "checkpoint_on_disk": max(
                            (int(p.stem.split(".")[1]) for p in (run / "checkpoints").glob("checkpoint.*.cat")),
                            default=None,
                        ),
                        "temp_files_left": sum(1 for name in left if "tmp" in name),
                        "lock_left": ".copycat-train.lock" in left,
                        "seconds": round(time.perf_counter() - clock, 2),
                    }
                    records.append(record)
                else:
                    finished_early = True
            code = process.wait(timeout=1800)
            text = stderr.read_text(encoding="utf-8", errors="replace")
            takeovers += text.count("taking over")
            if record:
                continue
            if code != 0:
                raise RuntimeError(f"launch {launch} exited {code}: {text[-2000:]}")
            break

        steps_logged = [int(step) for step, _, _ in _loss_rows(run / "loss.csv")]
        counts = Counter(steps_logged)
        rows, expected = _loss_rows(run / "loss.csv"), _loss_rows(reference / "loss.csv")
        differing = [mine[0] for mine, theirs in zip(rows, expected) if mine != theirs]
        weights = _weights_differ(run / "model.cat", reference / "model.cat")
        leftovers = {"killed_run": _leftovers(run), "reference_run": _leftovers(reference)}
        probe = _killed_before_first_checkpoint(root, pairs, steps)
    return {
        "steps": steps,
        "checkpoint_interval": interval,
        "job": "small, crop 32, batch 2, fp32, seed 3, 3 pairs 32x48, cpu 1 thread, image interval 10",
        "kills": len(records),
        "launches": launches,
        "finished_before_a_kill": finished_early,
        "lock_takeovers_warned": takeovers,
        "reference_seconds": round(reference_seconds, 1),
        "cycles": records,
        "missing_steps": sorted(set(range(1, steps + 1)) - set(counts))[:20],
        "duplicated_steps": sorted(step for step, count in counts.items() if count > 1)[:20],
        "loss_rows_equal_reference": rows == expected,
        "loss_rows_differing": differing[:20],
        "model_weights_equal_reference": not weights,
        "weights_differing": weights[:20],
        "leftovers": leftovers,
        "killed_before_first_checkpoint": probe,
        "ok": not (set(range(1, steps + 1)) ^ set(counts))
        and all(count == 1 for count in counts.values())
        and rows == expected
        and not weights
        and not any(leftovers.values()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a running process in KiB; (0, 0) once it is gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status", encoding="ascii") as stream:
        for line in stream:
            key = line.split(":")[0] + ":"
            if key in values:
                values[key] = int(line.split()[1])
    return values["VmRSS:"], values["VmHWM:"]


def soak(steps: int, seed: int) -> dict[str, Any]:
    """One tiny ``copycat train`` of ``steps`` steps (Small, crop 16, batch 1, fp32), its RSS sampled twice a
    second: growth from the end of warm-up (10% of the steps) to the last step, and no leftovers."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="copycat-soak-") as temporary:
        root = Path(temporary)
        pairs = _tiny_pairs(root)
        run = root / "soak"
        interval = max(1, min(1000, steps // 10))
        options = {"crop_size": 16, "batch_size": 1, "seed": seed, "checkpoint_interval": interval}
        process = _launch(
            _train_argv(pairs, run, steps, image_interval=interval, **options), root / "events", root / "err"
        )
        samples: list[tuple[int, float, int, int]] = []  # (step, seconds, VmRSS KiB, VmHWM KiB)
        while process.poll() is None:
            rss, hwm = _rss_kb(process.pid)
            step = _last_step(_read_events(root / "events")[-3:])
            if rss and step is not None:
                samples.append((step, time.perf_counter() - started, rss, hwm))
            time.sleep(0.5)
        code = process.wait()
        if code != 0:
            raise RuntimeError(f"the soak run exited {code}: {(root / 'err').read_text()[-2000:]}")
        warm = next((sample for sample in samples if sample[0] >= steps // 10), samples[0])
        # the end of training: the last sample before the final step; the finish (model.cat, the loss plot
        # and its matplotlib import) is a one-time cost, reported apart
        last = next((sample for sample in reversed(samples) if sample[0] < steps), samples[-1])
        rows = _loss_rows(run / "loss.csv")
        logged = [int(row[0]) for row in rows]
        finished = _read_events(root / "events")[-1]
        tenths = [next((s for s in samples if s[0] >= steps * k // 10), last) for k in range(1, 11)]
        leftovers = _leftovers(run)
        growth = 100.0 * (last[2] - warm[2]) / warm[2]
    return {
        "steps": steps,
        "job": "small, crop 16, batch 1, fp32, 3 pairs 32x48, cpu 1 thread",
        "checkpoint_and_image_interval": interval,
        "samples": len(samples),
        "rss_warm_mb": round(warm[2] / 1024, 1),
        "rss_warm_at_step": warm[0],
        "rss_end_mb": round(last[2] / 1024, 1),
        "rss_end_at_step": last[0],
        "rss_growth_percent": round(growth, 2),
        "rss_at_finish_mb": round(samples[-1][2] / 1024, 1),
        "rss_peak_mb": round(max(sample[3] for sample in samples) / 1024, 1),
        "rss_mb_by_step": {str(s[0]): round(s[2] / 1024, 1) for s in tenths},
        "steps_per_second": round(steps / finished["seconds"], 2),
        "steps_per_second_after_warm_up": round((last[0] - warm[0]) / max(1e-9, last[1] - warm[1]), 2),
        "loss_rows": len(logged),
        "loss_steps_exactly_once": logged == list(range(1, steps + 1)),
        "leftovers": leftovers,
        "ok": growth < 5.0 and not leftovers and logged == list(range(1, steps + 1)),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=600, help="hostile files to generate (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=3.0, help="address-space limit per worker (0: none)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per file and target before a hang")
    parser.add_argument("--kill-cycles", type=int, default=20, help="kill -9 + resume cycles (default 20; 0: none)")
    parser.add_argument("--soak-steps", type=int, default=10_000, help="training soak steps (default 10000; 0: none)")
    parser.add_argument("--skip-hostile", action="store_true", help="only the trainer parts (kill -9 cycles, soak)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result: dict[str, Any] = {"benchmark": "robustness", "seed": args.seed}
    if not args.skip_hostile:
        result = run(args.files, args.seed, args.memory_gb, args.timeout)
    if args.kill_cycles > 0:
        result["kill9_resume_cycles"] = kill_cycles(args.kill_cycles, args.seed)
    if args.soak_steps > 0:
        result["soak"] = soak(args.soak_steps, args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
