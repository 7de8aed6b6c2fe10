import os
import sys
from pathlib import Path

# Tests never reach the hub: a missing local model or data set must fail fast, not wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))  # for `from _tiny import ...`

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
