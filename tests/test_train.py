import pickle

import pytest
import torch

from staa.datasets import AudioDataset, load_records
from staa.datasets.synthetic.corpus import EMOTIONS
from staa.io.checkpoint import CheckpointError, save_checkpoint
from staa.models.victim import load_victim
from staa.training.victim import TrainConfig, train_victim


def _tiny(corpus):
    manifest, _ = corpus
    recs = load_records("manifest", manifest)
    keep = {"train": 48, "val": 16, "test": 16}
    out = []
    for split, n in keep.items():
        out += [r for r in recs if r.split == split][:n]
    return out


def _cfg(**kw):
    return TrainConfig(
        **{
            "arch": "mel_cnn",
            "classes": list(EMOTIONS),
            "epochs": 3,
            "batch_size": 16,
            "clip_seconds": 1.0,
            "model": {"width": 4},
            **kw,
        }
    )


def test_training_writes_metrics_and_a_loadable_best_checkpoint(corpus, tmp_path):
    report = train_victim(_cfg(), _tiny(corpus), tmp_path, progress=False)
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3]
    assert report["history"][-1]["train_loss"] < report["history"][0]["train_loss"]
    test = report["test"]
    assert 0 <= test["ua"] <= 1 and len(test["confusion"]) == 4 and sum(map(sum, test["confusion"])) == 16
    assert (tmp_path / "metrics.json").is_file()
    victim = load_victim(tmp_path / "best.pt", sample_rate=16_000)
    assert victim.arch == "mel_cnn" and victim.classes == list(EMOTIONS) and not victim.model.training
    with pytest.raises(CheckpointError, match="trained at 16000 Hz, but the data is at 8000 Hz"):
        load_victim(tmp_path / "best.pt", sample_rate=8000)


def test_resume_after_interruption_matches_an_uninterrupted_run(corpus, tmp_path, monkeypatch):
    recs = _tiny(corpus)
    train_victim(_cfg(), recs, tmp_path / "full", progress=False)
    reference = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["state_dict"]

    original = AudioDataset.set_epoch

    def interrupt_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(AudioDataset, "set_epoch", interrupt_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_victim(_cfg(), recs, tmp_path / "cut", progress=False)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["train_state"]["epoch"] == 2
    monkeypatch.setattr(AudioDataset, "set_epoch", original)
    train_victim(_cfg(), recs, tmp_path / "cut", progress=False)
    resumed = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    with pytest.raises(CheckpointError, match="other settings"):
        train_victim(_cfg(lr=1e-2), recs, tmp_path / "cut", progress=False)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_foreign_and_tampered_checkpoints_are_refused(corpus, tmp_path, capsys):
    torch.save({"format": "staa-ser/victim", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: refused"):
        load_victim(tmp_path / "evil.pt")
    assert "this must never run" not in capsys.readouterr().out
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle.pt"):
        load_victim(tmp_path / "pickle.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a staa-ser checkpoint"):
        load_victim(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "gen.pt", "generator", {"state_dict": {}})
    with pytest.raises(CheckpointError, match="is a staa-ser/generator checkpoint, expected staa-ser/victim"):
        load_victim(tmp_path / "gen.pt")
    train_victim(_cfg(epochs=1), _tiny(corpus), tmp_path / "run", progress=False)
    raw = (tmp_path / "run" / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a readable torch checkpoint"):
        load_victim(tmp_path / "cut.pt")
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    ckpt["arch"] = "emo18"  # weights of one architecture under another's name
    torch.save(ckpt, tmp_path / "swapped.pt")
    with pytest.raises(CheckpointError, match="swapped.pt: weights and config do not fit architecture emo18"):
        load_victim(tmp_path / "swapped.pt")
    ckpt["arch"], ckpt["config"] = "emo18", {}
    torch.save(ckpt, tmp_path / "swapped2.pt")
    with pytest.raises(CheckpointError, match="swapped2.pt: weights and config do not fit architecture emo18"):
        load_victim(tmp_path / "swapped2.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_victim(tmp_path / "nope.pt")


def test_batch_norm_statistics_are_those_of_the_final_weights_on_the_training_clips(corpus, tmp_path):
    recs = _tiny(corpus)
    train_victim(_cfg(epochs=1), recs, tmp_path, progress=False)
    model = load_victim(tmp_path / "last.pt").model
    bn = model.body[0][1]
    # what the first batch-norm layer sees on the training clips (the epoch's random crops), through the saved weights
    train = AudioDataset([r for r in recs if r.split == "train"], list(EMOTIONS), clip_seconds=1.0, crop="random")
    train.set_epoch(0)
    seen = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].mean(dim=(0, 2, 3))))
    with torch.no_grad():
        model(torch.stack([train[i][0] for i in range(len(train))]))
    hook.remove()
    # three steps of momentum 0.1 from zeros would leave the running mean at a quarter of this
    torch.testing.assert_close(bn.running_mean, seen[0], rtol=0.05, atol=1e-3)


def test_a_dataset_without_a_val_split_is_named_with_the_splits_it_has(tmp_path):
    from staa.datasets.records import DatasetError, Record
    from staa.datasets.splits import split_records

    records = [Record(str(tmp_path / "a" / f"{i}.wav"), "x", "s1", split="train") for i in range(3)]
    with pytest.raises(DatasetError) as err:
        split_records(records, "val")
    assert (
        str(err.value)
        == f"{tmp_path / 'a'}: no clips in the 'val' split (its splits: train); training needs train and val"
    )
    assert split_records(records, "train") == records
