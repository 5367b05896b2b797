"""Every rank samples its share of a stage: shares cover the batch once, parts merge into the one-process order."""

from raft.sampling.samples import Sample, read_samples
from raft.sampling.sharding import merge_parts, part_path, read_part, remove_parts, share, write_part


def test_shares_cover_the_batch_once_and_merge_in_its_order(tmp_path):
    batch = [(idx, f"prompt {idx}") for idx in (7, 3, 9, 1, 4)]
    shares = [share(batch, r, 2) for r in range(2)]
    assert sorted(p for s in shares for p in s) == sorted(batch)
    path = tmp_path / "samples.jsonl"
    for rank, mine in enumerate(shares):  # each rank's part, its samples in any order
        samples = [
            Sample(prompt_idx=i, prompt=p, response=f"r{j}", sample_idx=j, prompt_ids=[1, i], response_ids=[j, 2])
            for i, p in mine
            for j in (1, 0)
        ]
        write_part(path, rank, 2, samples)
    assert read_part(path, 1, 2) is not None and read_part(path, 0, 3) is None  # a part of another world size
    merged = merge_parts(path, batch, 2)
    assert [(s.prompt_idx, s.sample_idx) for s in read_samples(path)] == [(i, j) for i, _ in batch for j in (0, 1)]
    assert read_samples(path) == merged and merged[0].prompt_ids == [1, 7] and merged[0].response_ids == [0, 2]
    assert part_path(path, 0, 2).exists()  # kept until every stage file of the stage is merged
    remove_parts(tmp_path, 2)
    assert not list(tmp_path.glob("*.part*"))
