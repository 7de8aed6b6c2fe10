"""`alpaca_farm`: the 100 AlpacaFarm-Eval prompts the Speculative Rejection paper evaluates on (Sun et al.,
NeurIPS 2024, sections 5.1-5.3), for reward maximisation: no gold answers, strategies are compared by the
reward of the response they choose.

Two sources, one problem list:
- a local copy of the paper's `datasets/alpaca_farm_100.json` (a JSON list with `JSON_idx`, `af_eval_idx`,
  `prompt`), passed with `--data` (data=...); read in place, never copied;
- without `--data`, the hub's AlpacaFarm evaluation set (`tatsu-lab/alpaca_farm`, config
  `alpaca_farm_evaluation`, split `eval`) through `datasets`, keeping the paper's 100 rows in the paper's
  order: `ALPACA_FARM_100` lists their (JSON_idx, af_eval_idx) pairs, and a prompt is the row's
  `instruction` (the paper's prompts are the instructions alone).

The prompt goes to the generator as the only user turn, with the model's own chat template and no system
prompt of ours (the paper's setting: the generator's own likelihood of its own answer). Problem ids are
`alpaca-JJJ` by `JSON_idx`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError, ValidationError
from ._files import read_hub
from ._problem import Problem
from ._prompts import build_messages

__all__ = ["AlpacaFarmTask", "ALPACA_FARM_100", "HUB_DATASET"]

HUB_DATASET = ("tatsu-lab/alpaca_farm", "alpaca_farm_evaluation", "eval")

# (JSON_idx, af_eval_idx) of the paper's 100 prompts, in its file's order (generated from that file; only the
# row numbers, no text).
ALPACA_FARM_100 = [
    (59, 277), (75, 562), (0, 246), (1, 69), (2, 665), (3, 381), (4, 355), (5, 510), (6, 469), (7, 787),
    (8, 558), (9, 100), (10, 564), (11, 579), (12, 197), (13, 753), (14, 758), (15, 303), (16, 128), (17, 707),
    (18, 375), (19, 341), (20, 5), (21, 208), (22, 373), (23, 337), (24, 148), (25, 708), (26, 83), (27, 631),
    (28, 258), (29, 263), (30, 737), (31, 611), (32, 595), (33, 561), (34, 12), (35, 512), (36, 301), (37, 252),
    (38, 478), (39, 563), (40, 261), (41, 287), (42, 297), (43, 679), (44, 742), (45, 93), (46, 529), (47, 409),
    (48, 366), (49, 635), (50, 52), (51, 33), (52, 752), (53, 191), (54, 420), (55, 331), (56, 269), (57, 727),
    (58, 162), (60, 439), (61, 161), (62, 539), (63, 39), (64, 584), (65, 228), (66, 326), (67, 641), (68, 75),
    (69, 415), (70, 574), (71, 362), (72, 616), (73, 202), (74, 792), (76, 685), (77, 178), (78, 8), (79, 223),
    (80, 142), (81, 803), (82, 238), (83, 747), (84, 675), (85, 719), (86, 4), (87, 320), (88, 319), (89, 459),
    (90, 88), (91, 506), (92, 682), (93, 442), (94, 774), (95, 402), (96, 213), (97, 237), (98, 396), (99, 123),

]


@dataclass
class AlpacaFarmTask:
    """The Speculative Rejection paper's 100 AlpacaFarm prompts (no gold answers, no levels)."""

    name = "alpaca_farm"
    splits = ("test",)
    default_scorer = "confidence:logprob"
    """The paper's section 5.3 reward: the generator's own mean token log-probability of its response."""

    def load(
        self,
        *,
        split: str = "test",
        data: str | Path | None = None,
        limit: int | None = None,
        levels: Sequence[int] | None = None,
        seed: int = 0,
        system_prompt: str | None = None,
    ) -> list[Problem]:
        """Prompts in the paper's file order (`seed` is unused)."""
        if levels is not None:
            raise ValidationError("task 'alpaca_farm' has no difficulty levels; drop `levels`.", parameter="levels", value=list(levels))
        rows = _read_file(Path(data)) if data is not None else _read_hub()
        problems = []
        for json_idx, prompt in rows[:limit]:
            problems.append(
                Problem(
                    id=f"alpaca-{json_idx:03d}",
                    question=prompt,
                    messages=build_messages(prompt, system_prompt=system_prompt or ""),
                    answer=None,
                    meta={"json_idx": json_idx},
                )
            )
        return problems


def _read_file(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist; pass the paper's alpaca_farm_100.json (a JSON list)")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of {{JSON_idx, af_eval_idx, prompt}} objects, got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("JSON_idx"), int) or isinstance(row.get("JSON_idx"), bool):
            have = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{path} item {i}: needs an integer `JSON_idx` and a string `prompt` (it has: {have})")
        out.append((row["JSON_idx"], row["prompt"]))
    return out


def _read_hub() -> list[tuple[int, str]]:
    dataset, config, split = HUB_DATASET
    by_index = dict(read_hub(dataset, config, split, file_hint="alpaca_farm_100.json"))  # row numbers from 1
    out = []
    for json_idx, af_idx in ALPACA_FARM_100:
        row = by_index.get(af_idx + 1)
        if row is None or not isinstance(row.get("instruction"), str):
            raise DataError(f"{dataset} ({config}, {split}) has no instruction at row {af_idx}; pass the paper's file with --data")
        out.append((json_idx, row["instruction"]))
    return out
