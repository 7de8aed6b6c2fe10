"""The sampler's distribution, checked by counting: many seeded draws under temperature, top-k and top-p must
follow the renormalized distribution the knobs define (a chi-square bound; the seed is fixed, so the test is
deterministic), and the nucleus must hold exactly the tokens the top-p rule keeps. Keep sets are written out
by hand from the probabilities in the comments, not recomputed with the sampler's own rule."""

from __future__ import annotations

import pytest
import torch

from testtime.engines._sampling import sample

# Eight logits placed at scrambled token ids, so a sampler that returns a rank instead of a token id fails.
# softmax at T=1 (by rank): .3737 .2505 .1519 .1018 .0618 .0375 .0186 .0042; cumulative .374 .624 .776 .878 ...
# T=0.7: .4703 .2656 .1300 .0734 .0359 ...; cumulative .470 .736 .866 .939 ...
# T=1.5: .2909 .2228 .1597 .1223 .0876 ...; cumulative .291 .514 .673 .796 ...
RANKED = [2.0, 1.6, 1.1, 0.7, 0.2, -0.3, -1.0, -2.5]
TOKEN_OF_RANK = [5, 2, 7, 0, 3, 6, 1, 4]
LOGITS = torch.empty(8)
LOGITS[TOKEN_OF_RANK] = torch.tensor(RANKED)
NUM_DRAWS = 20_000
# Chi-square with at most 7 degrees of freedom: P(stat > 30) < 1e-4 for a correct sampler. Every plausible
# bug below moves a whole token's mass (about 0.1 x 20000 draws), a statistic in the hundreds or more.
CHI2_BOUND = 30.0

# (temperature, top_k, top_p, kept ranks)
CASES = [
    pytest.param(1.0, 0, 1.0, range(8), id="T1-plain"),
    pytest.param(0.7, 0, 1.0, range(8), id="T0.7-plain"),
    pytest.param(1.5, 0, 1.0, range(8), id="T1.5-plain"),
    pytest.param(1.0, 3, 1.0, range(3), id="top-k-3"),
    pytest.param(1.0, 1, 1.0, range(1), id="top-k-1"),
    # mass before rank 2 is .624 < .7: kept; before rank 3 it is .776 >= .7: dropped.
    pytest.param(1.0, 0, 0.7, range(3), id="top-p-0.7"),
    # T=1.5: .673 < .75 before rank 3, .796 before rank 4.
    pytest.param(1.5, 0, 0.75, range(4), id="T1.5-top-p-0.75"),
    # T=0.7: .866 < .9 before rank 3, .939 before rank 4.
    pytest.param(0.7, 0, 0.9, range(4), id="T0.7-top-p-0.9"),
    # The most likely token is always kept, even when alone it exceeds top_p.
    pytest.param(1.0, 0, 0.2, range(1), id="top-p-below-the-first"),
    pytest.param(1.0, 5, 0.7, range(3), id="top-p-binds-before-top-k"),
    pytest.param(1.5, 2, 0.9, range(2), id="top-k-binds-before-top-p"),
]


def intended(temperature: float, kept_ranks) -> torch.Tensor:
    """The softmax at `temperature` restricted to the kept tokens and renormalized (float64)."""
    probs = torch.softmax(LOGITS.double() / temperature, -1)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[[TOKEN_OF_RANK[r] for r in kept_ranks]] = True
    probs = torch.where(mask, probs, 0.0)
    return probs / probs.sum()


def draw(temperature: float, top_k: int, top_p: float, *, num: int = NUM_DRAWS, seed: int = 0, logits=LOGITS):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(num, generator=g)
    return sample(
        logits.expand(num, -1).contiguous(),
        torch.full((num,), temperature),
        torch.full((num,), top_k, dtype=torch.long),
        torch.full((num,), top_p),
        u,
    )


@pytest.mark.parametrize("temperature, top_k, top_p, kept", CASES)
def test_draws_follow_the_renormalized_distribution(temperature, top_k, top_p, kept):
    tokens, logprobs = draw(temperature, top_k, top_p)
    want = intended(temperature, kept)
    counts = torch.bincount(tokens, minlength=8).double()
    # Exactly the kept tokens are drawn: a top-p that keeps one token too many or too few fails here.
    assert sorted(torch.nonzero(counts).flatten().tolist()) == sorted(TOKEN_OF_RANK[r] for r in kept)
    support = want > 0
    expected = NUM_DRAWS * want[support]
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_BOUND, f"chi-square {chi2:.1f}: counts {counts.tolist()} vs expected {(NUM_DRAWS * want).tolist()}"
    # The returned logprob is the unmodified model's (no temperature, no truncation).
    assert torch.equal(logprobs, torch.log_softmax(LOGITS, -1)[tokens])


def test_the_chi_square_bound_rejects_a_one_token_shift_of_the_nucleus():
    """The bound is tight enough: counts drawn from the top-p=0.7 nucleus compared with the nucleus one token
    wider (what an off-by-one would sample) give a statistic far above it."""
    tokens, _ = draw(1.0, 0, 0.7)
    counts = torch.bincount(tokens, minlength=8).double()
    wider = intended(1.0, range(4))
    expected = NUM_DRAWS * wider[wider > 0]
    assert float(((counts[wider > 0] - expected) ** 2 / expected).sum()) > 10 * CHI2_BOUND


def test_rows_with_different_knobs_share_one_call():
    """Per-row temperature / top-k / top-p in one batch (greedy rows included) sample as they would alone."""
    g = torch.Generator().manual_seed(1)
    per = 5000
    knobs = [(0.0, 0, 1.0), (1.0, 0, 1.0), (1.0, 3, 1.0), (1.0, 0, 0.7), (1.5, 2, 0.9)]
    temperature = torch.tensor([t for t, _, _ in knobs]).repeat_interleave(per)
    top_k = torch.tensor([k for _, k, _ in knobs]).repeat_interleave(per)
    top_p = torch.tensor([p for _, _, p in knobs]).repeat_interleave(per)
    tokens, _ = sample(LOGITS.expand(len(knobs) * per, -1).contiguous(), temperature, top_k, top_p, torch.rand(len(knobs) * per, generator=g))
    groups = tokens.view(len(knobs), per)
    assert groups[0].tolist() == [TOKEN_OF_RANK[0]] * per  # temperature 0 is argmax
    for row, (t, kept) in zip(groups[1:], [(1.0, range(8)), (1.0, range(3)), (1.0, range(3)), (1.5, range(2))], strict=True):
        want = intended(t, kept)
        counts = torch.bincount(row, minlength=8).double()
        assert set(torch.nonzero(counts).flatten().tolist()) == {TOKEN_OF_RANK[r] for r in kept}
        expected = per * want[want > 0]
        assert float(((counts[want > 0] - expected) ** 2 / expected).sum()) < CHI2_BOUND


def test_a_nucleus_wider_than_the_top_k_window_is_exact():
    """Top-p over a large vocabulary whose nucleus is wider than the sampler's 1024-token window takes the
    full-sort path. Evenly spaced uniforms u = (i + 1/2) / N make the counts deterministic: token j is drawn
    N x q_j times, give or take one, where q is the renormalized nucleus."""
    V, N = 2048, 8192
    logits = -torch.arange(V, dtype=torch.float32) * 2e-4  # distinct, slowly decreasing: token j has rank j
    probs = torch.softmax(logits.double(), -1)
    top_p = 0.6
    before = probs.cumsum(0) - probs
    width = int((before < top_p).sum())  # tokens 0 .. width-1 are the nucleus (plain float64 arithmetic)
    assert width > 1024
    u = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    tokens, _ = sample(logits.expand(N, -1).contiguous(), torch.ones(N), torch.zeros(N, dtype=torch.long), torch.full((N,), top_p), u.float())
    counts = torch.bincount(tokens, minlength=V).double()
    q = probs[:width] / probs[:width].sum()
    assert counts[width:].sum() == 0  # nothing outside the nucleus
    assert (counts[:width] - N * q).abs().max() <= 1.5  # every nucleus token, the last one included
