"""Fine-tuning the generator on data exported from its own runs (`testtime export`, `testtime finetune`).

Sits above `eval` (it draws its loss curve with the eval plots) and below `cli`.

Needs the `train` extra (trl, peft): `pip install 'testtime[train]'`.
"""

from ._data import load_sft_data
from ._train import FinetuneParams, FinetuneResult, finetune

__all__ = ["FinetuneParams", "FinetuneResult", "finetune", "load_sft_data"]
