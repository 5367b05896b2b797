import pytest

from raft.sampling.samples import Sample
from raft.selection.selectors import GlobalRanking, LocalRanking, ThresholdSelection, mixed_prompts, ranking_score


def s(prompt_idx, sample_idx, reward, logp=None, ref_logp=None, prompt="same prompt"):
    return Sample(
        prompt_idx=prompt_idx,
        prompt=prompt,
        response=f"r{prompt_idx}.{sample_idx}",
        sample_idx=sample_idx,
        reward=reward,
        logp=logp,
        ref_logp=ref_logp,
    )


def test_local_keeps_argmax_per_prompt_index_even_when_prompt_texts_are_equal():
    samples = [s(0, 0, 0.1), s(0, 1, 0.9), s(0, 2, 0.5), s(1, 0, -1.0), s(1, 1, -2.0), s(1, 2, -0.5)]
    picked = LocalRanking()(samples)
    assert [(x.prompt_idx, x.sample_idx) for x in picked] == [(0, 1), (1, 2)]


def test_local_ties_keep_the_first_sample():
    picked = LocalRanking()([s(0, 0, 1.0), s(0, 1, 1.0)])
    assert picked[0].sample_idx == 0


def test_global_keeps_top_share_of_all_samples_defaulting_to_one_over_k():
    samples = [s(0, 0, 0.1), s(0, 1, 0.2), s(1, 0, 0.9), s(1, 1, 0.8), s(2, 0, 0.3), s(2, 1, 0.7)]
    picked = GlobalRanking()(samples)  # K=2 -> keep 3 of 6, two of them from prompt 1
    assert [x.reward for x in picked] == [0.9, 0.8, 0.7]
    assert [x.reward for x in GlobalRanking(acceptance_ratio=1 / 6)(samples)] == [0.9]


def test_kl_penalised_ranking_follows_equation_5():
    # r - beta * (logp - ref_logp): 1.0 - 0.5 * (-2 - (-10)) = -3.0 ; 0.5 - 0.5 * (-5 - (-5)) = 0.5
    far, near = s(0, 0, 1.0, logp=-2.0, ref_logp=-10.0), s(0, 1, 0.5, logp=-5.0, ref_logp=-5.0)
    assert ranking_score(far, 0.5) == pytest.approx(-3.0)
    assert LocalRanking(beta=0.5)([far, near])[0] is near
    assert LocalRanking(beta=0.0)([far, near])[0] is far
    assert LocalRanking(beta=0.1).needs_log_probs and not LocalRanking().needs_log_probs


def test_threshold_keeps_every_sample_at_or_above_it_however_many_a_prompt_has():
    samples = [s(0, 0, 1.0), s(0, 1, 0.0), s(0, 2, 1.0), s(1, 0, 0.0), s(1, 1, 0.99), s(2, 0, 2.0)]
    picked = ThresholdSelection(threshold=1.0)(samples)
    assert [(x.prompt_idx, x.sample_idx) for x in picked] == [(0, 0), (0, 2), (2, 0)]
    assert ThresholdSelection(threshold=5.0)(samples) == []  # nothing reached it: the stage keeps its policy
    assert not ThresholdSelection().needs_log_probs


def test_reinforce_rej_drops_prompts_whose_rewards_are_all_equal():
    samples = [s(0, 0, 1.0), s(0, 1, 1.0), s(1, 0, 0.0), s(1, 1, 1.0), s(2, 0, 0.0), s(2, 1, 0.0), s(3, 0, 0.5)]
    kept, dropped = mixed_prompts(samples)
    assert [(x.prompt_idx, x.sample_idx) for x in kept] == [(1, 0), (1, 1)]
    assert dropped == 3  # all solved, all failed, and a prompt with one response: nothing to compare
    assert LocalRanking(mixed_prompts_only=True).mixed_prompts_only and not LocalRanking().mixed_prompts_only


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LocalRanking(beta=-0.1), "selector.beta must be >= 0"),
        (lambda: GlobalRanking(acceptance_ratio=0.0), "selector.acceptance_ratio must be in (0, 1]"),
        (lambda: GlobalRanking(acceptance_ratio=1.5), "selector.acceptance_ratio must be in (0, 1]"),
        (lambda: ThresholdSelection(threshold=float("nan")), "selector.threshold must be a finite number"),
    ],
)
def test_bad_selector_arguments_name_the_field(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        make()


def test_missing_log_probs_is_a_clear_error():
    with pytest.raises(ValueError, match="needs logp and ref_logp"):
        LocalRanking(beta=0.1)([s(0, 0, 1.0)])
