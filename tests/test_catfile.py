"""The .cat container: exact round trips, atomic writes, and refusal of every damaged or hostile file."""

from __future__ import annotations

import functools
import os
import pickle
import random
import tempfile
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from copycat_nuke import catfile
from copycat_nuke.catfile import (
    FORMAT_VERSION,
    CatFile,
    Manifest,
    ResumeState,
    describe,
    flatten_optimizer_state,
    format_description,
    load_cat,
    read_manifest,
    save_cat,
    unflatten_optimizer_state,
)
from copycat_nuke.errors import CatFileError
from copycat_nuke.models import build_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks gain nothing from threads; on a busy machine spinning threads make them 100× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ARGS = {
    "in_channels": 3,
    "out_channels": 3,
    "width": 2,
    "levels": 2,
    "blocks": 1,
    "lstm": False,
    "scale": 1,
    "temporal": 0,
}


def tiny_manifest(**changes: Any) -> Manifest:
    manifest = Manifest(
        architecture="msrn",
        arguments=dict(ARGS),
        channels_in=["R", "G", "B"],
        channels_out=["R", "G", "B"],
        transfer={"name": "slog", "params": {"a": 50.0}},
        training={
            "steps": 4000,
            "final_loss": 0.0123,
            "seconds": 3725.0,
            "device": "cpu",
            "source_frames": [1001, 1010, 1020],
            "created": "2026-11-24T10:00:00",
            "copycat_version": "0.1.0",
        },
        config={"epochs": 10000, "crop_size": 256, "model_size": "small"},
    )
    for key, value in changes.items():
        setattr(manifest, key, value)
    return manifest


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("msrn", ARGS)
    with torch.no_grad():  # the residual head starts at zero; make every weight distinctive
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def saved_model(tmp_path: Path, name: str = "model.cat") -> Path:
    return save_cat(tmp_path / name, tiny_manifest(), tiny_model().state_dict())


def with_manifest(tmp_path: Path, edit: Any, name: str = "edited.cat") -> Path:
    """A copy of a valid model whose manifest mapping went through ``edit``."""
    members = members_of(saved_model(tmp_path))
    data = yaml.safe_load(members["manifest.yaml"])
    edit(data)
    members["manifest.yaml"] = yaml.safe_dump(data).encode()
    return write_zip(tmp_path / name, members)


def refused(path: Path, *words: str) -> str:
    """Loading ``path`` raises a CatFileError that names the file (and says ``words``)."""
    with pytest.raises(CatFileError) as caught:
        load_cat(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message
    return message


# ------------------------------------------------------------------------------------------ round trips


def test_model_round_trip_keeps_weights_bit_identical_and_manifest_equal(tmp_path: Path) -> None:
    model = tiny_model()
    path = save_cat(tmp_path / "model.cat", tiny_manifest(), model.state_dict())
    loaded = load_cat(path)
    assert isinstance(loaded, CatFile)
    assert loaded.manifest == tiny_manifest()
    assert loaded.resume is None and loaded.path == path and loaded.preview is None
    assert loaded.weights.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.weights[name], tensor)
    rebuilt = loaded.build_model()
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(rebuilt(x), model.eval()(x))


def test_saved_arguments_name_every_constructor_argument(tmp_path: Path) -> None:
    partial = {"width": 2, "levels": 2, "blocks": 1}
    model = build_model("msrn", partial)
    path = save_cat(tmp_path / "model.cat", tiny_manifest(arguments=partial), model.state_dict())
    assert read_manifest(path).arguments == ARGS


def test_written_archive_is_a_plain_documented_zip(tmp_path: Path) -> None:
    path = save_cat(tmp_path / "m.cat", tiny_manifest(), tiny_model().state_dict(), preview=b"\x89PNG\r\n\x1a\nxx")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["manifest.yaml", "weights.safetensors", "preview.png"]
        manifest = yaml.safe_load(archive.read("manifest.yaml"))
    assert manifest["format_version"] == FORMAT_VERSION and manifest["kind"] == "model"
    assert load_cat(path).preview == b"\x89PNG\r\n\x1a\nxx"


def test_same_contents_write_byte_identical_files(tmp_path: Path) -> None:
    a = save_cat(tmp_path / "a.cat", tiny_manifest(), tiny_model().state_dict())
    b = save_cat(tmp_path / "b.cat", tiny_manifest(), tiny_model().state_dict())
    assert a.read_bytes() == b.read_bytes()


def _steps(model: torch.nn.Module, optimizer: Any, scheduler: Any, inputs: list[torch.Tensor]) -> None:
    for x in inputs:
        loss = (model(x) - x.flip(-1)).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_checkpoint_resume_reproduces_uninterrupted_adam_steps(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    inputs = [torch.rand(2, 3, 8, 8, generator=generator) for _ in range(5)]
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    _steps(model, optimizer, scheduler, inputs[:3])

    resume = ResumeState(step=3, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
    path = save_cat(tmp_path / "ckpt.cat", tiny_manifest(), model.state_dict(), resume)
    loaded = load_cat(path)
    assert loaded.manifest.kind == "checkpoint" and loaded.resume is not None
    assert loaded.resume.step == 3
    assert loaded.resume.optimizer["param_groups"][0]["betas"] == (0.8, 0.95)

    resumed = loaded.build_model().train()
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    resumed_optimizer.load_state_dict(loaded.resume.optimizer)
    resumed_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(resumed_optimizer, T_max=10)
    resumed_scheduler.load_state_dict(loaded.resume.scheduler)

    _steps(model, optimizer, scheduler, inputs[3:])
    _steps(resumed, resumed_optimizer, resumed_scheduler, inputs[3:])
    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_checkpoint_restores_torch_numpy_and_python_random_states(tmp_path: Path) -> None:
    numpy_rng = np.random.default_rng(1234)
    numpy_rng.random(3)
    random.seed(99)
    torch.manual_seed(5)
    rng = {
        "numpy": numpy_rng.bit_generator.state,  # PCG64: 128-bit integers
        "python": random.getstate(),  # a tuple holding a tuple of 625 ints
        "torch": torch.get_rng_state(),  # a uint8 tensor
    }
    expected = (numpy_rng.random(4), random.random(), torch.rand(4))
    resume = ResumeState(step=1, optimizer={}, rng=rng, extra={"best_loss": 0.5, "history": [(1, 0.9)]})
    path = save_cat(tmp_path / "ckpt.cat", tiny_manifest(), tiny_model().state_dict(), resume)

    restored = load_cat(path).resume
    assert restored is not None
    assert restored.rng["numpy"] == rng["numpy"]
    again = np.random.default_rng()
    again.bit_generator.state = restored.rng["numpy"]
    random.setstate(restored.rng["python"])
    torch.set_rng_state(restored.rng["torch"])
    assert np.array_equal(again.random(4), expected[0])
    assert random.random() == expected[1]
    assert torch.equal(torch.rand(4), expected[2])
    assert restored.extra == {"best_loss": 0.5, "history": [(1, 0.9)]}


def test_flatten_optimizer_state_round_trips_tuples_and_tensors() -> None:
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    optimizer.step()
    state = optimizer.state_dict()
    tensors, meta = flatten_optimizer_state(state)
    yaml.safe_dump(meta)  # the structure is plain YAML
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    back = unflatten_optimizer_state(tensors, yaml.safe_load(yaml.safe_dump(meta)))
    assert back["param_groups"] == state["param_groups"]
    assert isinstance(back["param_groups"][0]["betas"], tuple)
    for index, entry in state["state"].items():
        for key, tensor in entry.items():
            assert torch.equal(back["state"][index][key], tensor)


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=plain)
@example(value={"\x85": "NEL and \u2028 are line breaks to YAML", "é": ("ü", -0.0, 2**70)})
def test_resume_extra_round_trips_plain_values_exactly(tmp_path: Path, value: Any) -> None:
    resume = ResumeState(step=0, optimizer={}, extra={"value": value})
    path = save_cat(tmp_path / "ckpt.cat", tiny_manifest(), tiny_model().state_dict(), resume)
    restored = load_cat(path).resume
    assert restored is not None
    assert restored.extra == {"value": value}
    assert repr(restored.extra) == repr({"value": value})  # same types too: tuples stay tuples


# ---------------------------------------------------------------------------------- manifest and info


def test_read_manifest_reads_no_weights(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    members["weights.safetensors"] = b"\x08" + bytes(100)  # unreadable weights
    path = write_zip(tmp_path / "damaged.cat", members)
    assert read_manifest(path) == tiny_manifest()
    refused(path, "weights.safetensors")


def test_describe_tells_a_compositor_what_the_model_does(tmp_path: Path) -> None:
    path = saved_model(tmp_path)
    info = describe(path)
    parameters = sum(p.numel() for p in tiny_model().parameters())
    assert info["parameters"] == parameters
    assert info["weights_mb"] == round(parameters * 4 / 1e6, 3)
    assert info["file_mb"] == round(path.stat().st_size / 1e6, 3)
    assert info["channels_in"] == ["R", "G", "B"] and info["channels_out"] == ["R", "G", "B"]
    assert info["scale"] == 1 and info["kind"] == "model" and info["format_version"] == FORMAT_VERSION
    assert info["training"]["steps"] == 4000 and info["training"]["device"] == "cpu"
    assert info["architecture"] == "msrn" and info["arguments"]["width"] == 2

    text = format_description(info)
    for expected in (
        str(path),
        "copycat_nuke model, format version 1",
        "msrn",
        f"{parameters:,}",
        "channels in    R, G, B",
        "scale          1×",
        "slog (a 50.0)",
        "4,000",
        "final loss     0.0123",
        "1 h 02 min",
        "source frames  1001, 1010, 1020",
        "2026-11-24T10:00:00",
    ):
        assert expected in text, expected


# ---------------------------------------------------------------------------------------- saving


def test_save_refuses_what_it_could_not_load_back(tmp_path: Path) -> None:
    weights = tiny_model().state_dict()
    target = tmp_path / "bad.cat"
    nan = {**weights, "out.bias": torch.full_like(weights["out.bias"], float("nan"))}
    cases = [
        (tiny_manifest(), nan, "NaN"),
        (tiny_manifest(channels_in=["R", "G"]), weights, "channels_in"),
        (tiny_manifest(config={"crop": (256, 256)}), weights, "config/crop"),
        (tiny_manifest(training={"output": Path("/x")}), weights, "PosixPath" if os.name != "nt" else "Path"),
        (tiny_manifest(scale=0), weights, "scale"),
        (tiny_manifest(), {k: v for k, v in weights.items() if k != "out.bias"}, "out.bias"),
        (tiny_manifest(), {**weights, "out.bias": weights["out.bias"].long()}, "out.bias"),
    ]
    for manifest, tensors, word in cases:
        with pytest.raises(CatFileError) as caught:
            save_cat(target, manifest, tensors)
        assert str(target) in str(caught.value) and word in str(caught.value)
        assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_file_and_no_temporary(tmp_path: Path, monkeypatch: Any) -> None:
    original = zipfile.ZipFile.writestr

    def fail_on_weights(self: zipfile.ZipFile, info: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(info, "filename", info) == "weights.safetensors":
            raise OSError(28, "No space left on device")
        original(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail_on_weights)
    with pytest.raises(CatFileError, match="No space left"):
        save_cat(tmp_path / "new.cat", tiny_manifest(), tiny_model().state_dict())
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_previous_file(tmp_path: Path, monkeypatch: Any) -> None:
    path = saved_model(tmp_path)
    before = path.read_bytes()

    def no_rename(source: Any, target: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        save_cat(path, tiny_manifest(scale=2), tiny_model(seed=1).state_dict())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.cat"]


def test_written_files_are_readable_by_other_users(tmp_path: Path) -> None:
    if os.name == "nt":
        pytest.skip("POSIX permissions")
    old = os.umask(0o022)
    try:
        path = saved_model(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_into_a_missing_folder_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "model.cat"
    with pytest.raises(CatFileError, match="folder does not exist") as caught:
        save_cat(target, tiny_manifest(), tiny_model().state_dict())
    assert str(target) in str(caught.value)


# ------------------------------------------------------------------------------------- hostile files


class _Payload:
    """Unpickling this creates ``target``: the proof that a loader ran code from the file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.target), "w"))


def test_hostile_cat_never_executes_pickle(tmp_path: Path) -> None:
    sanity = tmp_path / "sanity"
    pickle.loads(pickle.dumps(_Payload(sanity))).close()
    assert sanity.exists()  # the payload is live

    pwned = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(pwned))
    valid = members_of(saved_model(tmp_path))
    torch_saved = tmp_path / "torch_saved.cat"
    torch.save({"weights": _Payload(pwned)}, torch_saved)
    candidates = [
        (write_zip(tmp_path / "a.cat", {**valid, "weights.safetensors": payload}), "safetensors"),
        (write_zip(tmp_path / "b.cat", {**valid, "data.pkl": payload}), "unexpected member"),
        (write_zip(tmp_path / "c.cat", {"archive/data.pkl": payload}), "pickle"),
        (torch_saved, "pickle"),
        (tmp_path / "d.cat", "pickle"),
    ]
    (tmp_path / "d.cat").write_bytes(payload)
    for path, word in candidates:
        refused(path, word)
        with pytest.raises(CatFileError):
            read_manifest(path) if word != "safetensors" else describe(path)
    assert not pwned.exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "sub/", "weights/../x"])
def test_path_traversal_member_names_are_refused(tmp_path: Path, name: str) -> None:
    members = {**members_of(saved_model(tmp_path)), name: b"x"}
    refused(write_zip(tmp_path / "traversal.cat", members), "unexpected member", repr(name))
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize(
    ("member", "words"),
    [("weights.safetensors", ["declares 52428800 bytes"]), ("resume.safetensors", ["declares 52428800 bytes"])],
)
def test_zip_bomb_is_refused_before_decompressing(tmp_path: Path, member: str, words: list[str]) -> None:
    resume = ResumeState(step=1, optimizer={})
    members = members_of(save_cat(tmp_path / "c.cat", tiny_manifest(), tiny_model().state_dict(), resume))
    members[member] = bytes(50 << 20)  # 50 MB of zeros deflate to ~50 KB
    path = write_zip(tmp_path / "bomb.cat", members)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        refused(path, member, *words)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20


def test_archives_listing_thousands_of_members_are_refused_before_parsing(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    members.update({f"{index}": b"" for index in range(5000)})
    refused(write_zip(tmp_path / "crowd.cat", members), "lists 5002 members")


def test_members_over_the_size_limits_are_refused(tmp_path: Path, monkeypatch: Any) -> None:
    path = saved_model(tmp_path)
    monkeypatch.setattr(catfile, "MAX_TOTAL_BYTES", 10_000)
    refused(path, "limit 10000")


def test_lying_zip_sizes_cannot_exhaust_memory(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    members["manifest.yaml"] += b"#" + b" " * (20 << 20)  # 20 MB of YAML comment
    path = write_zip(tmp_path / "liar.cat", members)
    data = bytearray(path.read_bytes())
    # Rewrite the central directory's "uncompressed size" of manifest.yaml to a harmless 300 bytes.
    entry = data.index(b"PK\x01\x02")  # a central directory entry; the name starts 46 bytes in
    while data[entry + 46 : entry + 59] != b"manifest.yaml":
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (300).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        refused(path, "manifest.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20


def test_huge_manifest_is_refused(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    members["manifest.yaml"] += b"# " + os.urandom(5 << 19).hex().encode()  # 5 MB that deflate cannot shrink
    refused(write_zip(tmp_path / "huge.cat", members), "manifest.yaml", "limit 1048576")


def test_yaml_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    pwned = tmp_path / "pwned"
    evil = f"!!python/object/apply:os.mkdir [{str(pwned)!r}]\n".encode()
    tagged = members["manifest.yaml"].replace(b"config:", b"config:\n  x: " + evil + b"config_:", 1)
    refused(write_zip(tmp_path / "tag.cat", {**members, "manifest.yaml": evil}), "safe YAML")
    refused(write_zip(tmp_path / "tag2.cat", {**members, "manifest.yaml": tagged}), "manifest.yaml")
    assert not pwned.exists()


def test_yaml_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 9):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    members = {**members_of(saved_model(tmp_path)), "manifest.yaml": "\n".join(lines).encode()}
    refused(write_zip(tmp_path / "laughs.cat", members), "aliases")


def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    members = {**members_of(saved_model(tmp_path)), "manifest.yaml": b"[" * 50_000 + b"]" * 50_000}
    refused(write_zip(tmp_path / "deep.cat", members), "deep")


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    refused(with_manifest(tmp_path, lambda m: m.update(architecture="resnet9000")), "resnet9000")


def test_absurd_network_arguments_are_refused(tmp_path: Path) -> None:
    refused(with_manifest(tmp_path, lambda m: m["arguments"].update(width=100_000)), "width")


def test_newer_format_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    def future(m: dict[str, Any]) -> None:
        m.update(format_version=FORMAT_VERSION + 1, hologram={"depth": 3})

    refused(
        with_manifest(tmp_path, future),
        f"written by format version {FORMAT_VERSION + 1}",
        f"reads up to {FORMAT_VERSION}: upgrade copycat_nuke",
    )


@pytest.mark.parametrize(
    ("edit", "word"),
    [
        (lambda m: m.update(channels_in=["R", "G"]), "channels_in"),
        (lambda m: m.update(channels_out=[]), "channels_out"),
        (lambda m: m.update(channels_in=["R", "R", "B"]), "twice"),
        (lambda m: m.update(scale=99), "scale"),
        (lambda m: m.update(scale=True), "scale"),
        (lambda m: m.update(kind="recipe"), "kind"),
        (lambda m: m.update(transfer={"params": {}}), "transfer"),
        (lambda m: m.update(training=[1, 2]), "training"),
        (lambda m: m.update(surprise=1), "unknown key"),
        (lambda m: m.pop("architecture"), "architecture"),
        (lambda m: m.update(format_version="1"), "format_version"),
        (lambda m: m.update(kind="checkpoint"), "resume.yaml"),
    ],
)
def test_inconsistent_manifests_are_refused(tmp_path: Path, edit: Any, word: str) -> None:
    refused(with_manifest(tmp_path, edit), word)


def _with_weights(tmp_path: Path, weights: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save

    members = members_of(saved_model(tmp_path))
    members["weights.safetensors"] = save(weights)
    return write_zip(tmp_path / "weights.cat", members)


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path: Path) -> None:
    weights = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    refused(_with_weights(tmp_path, {**weights, "out.bias": torch.zeros(4)}), "out.bias", "[4]", "[3]")
    missing = {k: v for k, v in weights.items() if k != "out.weight"}
    refused(_with_weights(tmp_path, missing), "missing", "out.weight")
    refused(_with_weights(tmp_path, {**weights, "backdoor": torch.zeros(1)}), "unexpected", "backdoor")
    integer = {**weights, "out.bias": torch.zeros(3, dtype=torch.int32)}
    refused(_with_weights(tmp_path, integer), "I32")
    nan = {**weights, "out.bias": torch.tensor([0.0, float("nan"), 0.0])}
    refused(_with_weights(tmp_path, nan), "NaN")


def test_checkpoint_with_mismatched_resume_tensors_is_refused(tmp_path: Path) -> None:
    resume = ResumeState(step=1, optimizer={}, rng={"torch": torch.get_rng_state()})
    path = save_cat(tmp_path / "ckpt.cat", tiny_manifest(), tiny_model().state_dict(), resume)
    from safetensors.torch import save

    members = members_of(path)
    members["resume.safetensors"] = save({"rng/torch": torch.zeros(2), "smuggled": torch.zeros(1)})
    refused(write_zip(tmp_path / "mismatch.cat", members), "smuggled")


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    path = tmp_path / "dup.cat"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning):
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("manifest.yaml", members["manifest.yaml"])
    refused(path, "twice")


def test_not_a_zip_explains_nuke_native_cat_files(tmp_path: Path) -> None:
    path = tmp_path / "nuke_native.cat"
    path.write_bytes(b"\x00\x01FNCAT" + os.urandom(2000))
    message = refused(path, "not a copycat_nuke .cat file", "Nuke's own .cat files")
    assert "copycat export" in message
    with pytest.raises(CatFileError, match="Nuke's own"):
        read_manifest(path)


def test_empty_missing_and_truncated_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.cat"
    empty.write_bytes(b"")
    refused(empty, "empty")
    refused(tmp_path / "missing.cat", "no such file")
    whole = saved_model(tmp_path).read_bytes()
    truncated = tmp_path / "truncated.cat"
    truncated.write_bytes(whole[: len(whole) // 2])
    refused(truncated, "truncated")
    refused(tmp_path, "")  # a folder


def test_corrupted_weights_fail_their_checksum(tmp_path: Path) -> None:
    path = saved_model(tmp_path)
    data = bytearray(path.read_bytes())
    data[data.index(b"weights.safetensors") + 20_000] ^= 0xFF  # past the JSON header, in the data
    path.write_bytes(bytes(data))
    refused(path, "damaged")


def test_unsupported_compression_is_refused(tmp_path: Path) -> None:
    members = members_of(saved_model(tmp_path))
    refused(write_zip(tmp_path / "lzma.cat", members, zipfile.ZIP_LZMA), "compression")


@functools.lru_cache(maxsize=1)
def _checkpoint_members() -> dict[str, bytes]:
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    optimizer.step()
    resume = ResumeState(step=1, optimizer=optimizer.state_dict(), rng={"python": random.getstate()})
    with tempfile.TemporaryDirectory() as folder:
        return members_of(save_cat(Path(folder) / "c.cat", tiny_manifest(), model.state_dict(), resume))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    member=st.sampled_from(["manifest.yaml", "weights.safetensors", "resume.yaml", "resume.safetensors", ""]),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=3),
    cut=st.none() | st.floats(0, 1),
)
def test_damaged_files_only_ever_raise_catfileerror(
    tmp_path: Path, member: str, flips: list[tuple[float, int]], cut: float | None
) -> None:
    """Flip bytes inside one member (re-zipped, so checksums pass and the parsers see the damage), or
    in the raw archive when ``member`` is empty; optionally cut the result short."""
    members = dict(_checkpoint_members())
    raw = bytearray(members[member] if member else write_zip(tmp_path / "raw.cat", members).read_bytes())
    for where, mask in flips:
        raw[int(where * len(raw))] ^= mask
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    path = tmp_path / "damaged.cat"
    if member:
        write_zip(path, {**members, member: bytes(raw)})
    else:
        path.write_bytes(bytes(raw))
    try:
        load_cat(path)
    except CatFileError as error:
        assert str(path) in str(error)


def test_unreadable_files_raise_catfileerror_from_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "junk.cat"
    path.write_bytes(b"junk" * 10)
    for reader in (load_cat, read_manifest, describe):
        with pytest.raises(CatFileError, match=r"junk\.cat"):
            reader(path)
