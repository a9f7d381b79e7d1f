"""AdaFuse: adaptive word-level ensemble decoding of LLMs with different tokenizers."""
from .config import DecodeConfig, Execution
from .decode import generate, stream
from .errors import AdafuseError, InputError, ModelLoadError
from .state import PromptCache
from .models import DEFAULT_PAIR, LM, PRESETS, Preset, cache_dir, is_cached, load_model, load_models, unavailable
from .trace import Candidate, Proposal, Round, Stats, Trace

__all__ = ["DecodeConfig", "Execution", "generate", "stream", "PromptCache", "AdafuseError", "InputError", "ModelLoadError",
           "DEFAULT_PAIR", "LM", "PRESETS", "Preset", "cache_dir", "is_cached", "load_model", "load_models",
           "unavailable", "Candidate", "Proposal", "Round", "Stats", "Trace"]
