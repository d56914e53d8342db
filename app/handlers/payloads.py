"""The one place that knows the shapes Gradio sends: file data, the image editor's layers, gallery items.

A plain path (library callers, tests) is accepted wherever Gradio would send file data.
"""

from __future__ import annotations

from pathlib import Path

from ldm.errors import LdmError


def upload(value) -> tuple[str | None, str]:
    """(the file's path, the name the user knows it by) of an upload: Gradio's file data or a plain path."""
    if isinstance(value, dict):
        path = value.get("path")
        return path, Path(value.get("orig_name") or path or "upload").name
    return value, Path(value).name if value else ""


def editor_files(editor) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """An image editor's picture and its painted layers, each as (path, name); Gradio's {"background", "layers"}."""
    if not isinstance(editor, dict) or not editor.get("background"):
        raise LdmError("upload an image to start from")
    return upload(editor["background"]), [upload(layer) for layer in editor.get("layers") or []]


def gallery_items(gallery) -> list[tuple[str | None, str | None]]:
    """A gallery's (file, caption) pairs: Gradio sends (image, caption) pairs or {"image", "caption"} dicts, the
    image a path or file data."""
    items = []
    for item in gallery or []:
        if isinstance(item, dict):
            image, caption = item.get("image"), item.get("caption")
        else:
            image, caption = item[0], item[1] if len(item) > 1 else None
        items.append((image.get("path") if isinstance(image, dict) else image, caption))
    return items
