"""``copycat info``'s text: a ``.cat``'s description (:func:`copycat_nuke.catfile.describe`) for people."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TRAINING_LABELS = {
    "steps": "steps",
    "final_loss": "final loss",
    "seconds": "time",
    "device": "device",
    "hardware": "hardware",
    "source_frames": "source frames",
    "created": "created",
    "copycat_version": "copycat_nuke",
}


def format_description(info: Mapping[str, Any]) -> str:
    """Multi-line, human-readable text of :func:`describe`'s dict, for ``copycat info``."""
    arguments = ", ".join(f"{key} {value}" for key, value in info["arguments"].items())
    lines = [
        f"{info['file']}",
        f"  copycat_nuke {info['kind']}, format version {info['format_version']}, {info['file_mb']:.2f} MB",
        f"  network        {info['architecture']} ({arguments})",
        f"  parameters     {info['parameters']:,} ({info['weights_mb']:.2f} MB of weights)",
        f"  channels in    {', '.join(info['channels_in'])}",
        f"  channels out   {', '.join(info['channels_out'])}",
        f"  scale          {info['scale']}×",
        f"  transfer       {_describe_transfer(info['transfer'])}",
    ]
    temporal = int(info["arguments"].get("temporal", 0) or 0)
    if temporal:
        lines.insert(-1, f"  temporal       sees {temporal} neighbouring frame(s) on each side")
    training = dict(info.get("training") or {})
    if training:
        lines.append("  training")
        keys = [key for key in _TRAINING_LABELS if key in training]
        keys += [key for key in training if key not in _TRAINING_LABELS]
        for key in keys:
            label = _TRAINING_LABELS.get(key, str(key).replace("_", " "))
            lines.append(f"    {label:<14} {_describe_value(key, training[key])}")
    return "\n".join(lines)


def _describe_transfer(transfer: Mapping[str, Any]) -> str:
    params = transfer.get("params")
    if isinstance(params, Mapping) and params:
        return f"{transfer['name']} ({', '.join(f'{k} {v}' for k, v in params.items())})"
    return str(transfer["name"])


def _describe_value(key: str, value: Any) -> str:
    if key == "seconds" and isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = round(value)
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        if hours:
            return f"{hours} h {minutes:02d} min"
        return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    if key == "final_loss" and isinstance(value, float):
        return f"{value:.6g}"
    if key == "steps" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        shown = ", ".join(str(item) for item in value[:8])
        return f"{shown}, … ({len(value)} in all)" if len(value) > 8 else shown
    return str(value)
