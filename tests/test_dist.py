"""RESQUE_dist: agreement with a slow reference, properties, fingerprints."""

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

import resque
from toy import patterned_images, reference_dist, reference_embeddings, toy_cnn, with_gaussian_noise


@pytest.mark.parametrize("layer", [1, 2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_unbatched_reference(layer, seed):
    model = toy_cnn(seed)
    clean = patterned_images(20, seed=seed)
    shifted = with_gaussian_noise(patterned_images(15, seed=seed + 10), 0.3)
    got = resque.resque_dist(model, clean, shifted, str(layer), batch_size=7, progress=False)
    want, want_angles = reference_dist(
        reference_embeddings(model, clean, layer), clean.tensors[1].numpy(),
        reference_embeddings(model, shifted, layer), shifted.tensors[1].numpy(),
    )
    # float32 forward passes batched vs one image at a time agree to ~1e-7
    assert float(got) == pytest.approx(want, abs=1e-6)
    assert got.angles.keys() == want_angles.keys()
    for k in want_angles:
        assert got.angles[k] == pytest.approx(want_angles[k], abs=1e-6)
    assert got.counts_original == {0: 20, 1: 20, 2: 20}
    assert got.counts_shifted == {0: 15, 1: 15, 2: 15}


def test_dataset_against_itself_is_zero():
    model = toy_cnn()
    data = patterned_images(30)
    assert float(resque.resque_dist(model, data, data, "2", progress=False)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.filterwarnings("ignore::resque.errors.PixelRangeWarning")  # properties hold for any real-valued data
@pytest.mark.parametrize("seed", range(5))
def test_lies_in_unit_interval(seed):
    g = torch.Generator().manual_seed(seed)
    model = toy_cnn(seed)
    a = TensorDataset(torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 4)
    b = TensorDataset(torch.randn(40, 1, 8, 8, generator=g) * 3, torch.arange(40) % 4)
    result = resque.resque_dist(model, a, b, "2", progress=False)
    assert 0.0 <= float(result) <= 1.0
    assert all(0.0 <= theta <= 1.0 for theta in result.angles.values())


def test_opposite_directions_give_one():
    # A 2-D "layer" that is the identity: embeddings are the inputs themselves.
    model = torch.nn.Sequential(torch.nn.Flatten())
    up = TensorDataset(torch.ones(4, 1, 1, 2), torch.tensor([0, 0, 1, 1]))
    down = TensorDataset(-torch.ones(4, 1, 1, 2), torch.tensor([0, 0, 1, 1]))
    assert float(resque.resque_dist(model, up, down, "0", progress=False)) == pytest.approx(1.0)


def test_invariant_to_batch_size_and_order():
    model = toy_cnn()
    clean = patterned_images(25)
    shifted = with_gaussian_noise(clean, 0.2)
    reference = float(resque.resque_dist(model, clean, shifted, "1", batch_size=75, progress=False))
    order = torch.randperm(75, generator=torch.Generator().manual_seed(3)).tolist()
    for batch_size in (1, 4, 32, 1000):
        value = float(resque.resque_dist(model, Subset(clean, order), shifted, "1", batch_size=batch_size, progress=False))
        assert value == pytest.approx(reference, abs=1e-9)
    shuffled = DataLoader(shifted, batch_size=9, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert float(resque.resque_dist(model, clean, shuffled, "1", progress=False)) == pytest.approx(reference, abs=1e-9)


def test_grows_with_gaussian_noise():
    model = toy_cnn()
    clean = patterned_images(200)
    values = [
        float(resque.resque_dist(model, clean, with_gaussian_noise(clean, sigma), "1", progress=False))
        for sigma in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
    ]
    assert values[0] == pytest.approx(0.0, abs=1e-7)
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_token_outputs_are_averaged_over_tokens_not_features():
    class Tokens(torch.nn.Module):
        def forward(self, x):  # (B, 1, T, D) image -> (B, T, D) tokens
            return x[:, 0]

    model = torch.nn.Sequential(Tokens())
    x = torch.rand(6, 1, 5, 3)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    y = torch.rand(6, 1, 5, 3)
    got = resque.resque_dist(model, TensorDataset(x, labels), TensorDataset(y, labels), "0", progress=False)
    emb_x = x[:, 0].mean(dim=1).double().numpy()  # (B, D): mean over the T tokens
    emb_y = y[:, 0].mean(dim=1).double().numpy()
    want, _ = reference_dist(emb_x, labels.numpy(), emb_y, labels.numpy())
    assert float(got) == pytest.approx(want, abs=1e-6)


def test_restores_training_mode_and_uses_eval():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    data = patterned_images(10)
    model.train()
    first = float(resque.resque_dist(model, data, with_gaussian_noise(data, 0.3), "2", progress=False))
    assert model.training
    second = float(resque.resque_dist(model, data, with_gaussian_noise(data, 0.3), "2", progress=False))
    assert first == second  # dropout was off during the pass
    model.eval()
    resque.resque_dist(model, data, data, "2", progress=False)
    assert not model.training


def test_no_gradients_are_built():
    model = toy_cnn()
    data = patterned_images(5)
    resque.resque_dist(model, data, data, "2", progress=False)
    assert all(p.grad is None for p in model.parameters())


def test_dataloader_input_and_explicit_cpu_device():
    model = toy_cnn()
    data = patterned_images(10)
    a = float(resque.resque_dist(model, DataLoader(data, batch_size=4), with_gaussian_noise(data, 0.2), "1", progress=False))
    b = float(resque.resque_dist(model, data, with_gaussian_noise(data, 0.2), "1", device="cpu", progress=False))
    assert a == pytest.approx(b, abs=1e-9)


def test_batch_size_with_a_dataloader_warns():
    model = toy_cnn()
    loader = DataLoader(patterned_images(4), batch_size=4)
    with pytest.warns(UserWarning, match="batch_size=8 is ignored"):
        resque.resque_dist(model, loader, loader, "1", batch_size=8, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model = toy_cnn()
    clean = patterned_images(30)
    shifted = with_gaussian_noise(clean, 0.3)
    cpu = float(resque.resque_dist(model, clean, shifted, "1", progress=False))
    gpu = float(resque.resque_dist(model.cuda(), clean, shifted, "1", progress=False))
    assert gpu == pytest.approx(cpu, abs=1e-5)


# --- fingerprints -------------------------------------------------------------------------------

def test_fingerprint_round_trip_gives_identical_result(tmp_path):
    model = toy_cnn()
    clean = patterned_images(30)
    shifted = with_gaussian_noise(clean, 0.3)
    direct = resque.resque_dist(model, clean, shifted, "1", progress=False)
    fp = resque.fingerprint(model, clean, "1", progress=False)
    path = tmp_path / "model.fingerprint.safetensors"
    fp.save(path)
    loaded = resque.load_fingerprint(path)
    assert torch.equal(loaded.sums, fp.sums) and torch.equal(loaded.counts, fp.counts)
    assert loaded.layer == "1" and loaded.classes == [0, 1, 2] and loaded.n_images == 90
    via_file = resque.resque_dist(model, loaded, shifted, "1", progress=False)
    assert float(via_file) == float(direct)
    assert via_file.angles == direct.angles


def test_fingerprint_shards_merge_to_the_whole():
    model = toy_cnn()
    data = patterned_images(20)
    whole = resque.fingerprint(model, data, "1", progress=False)
    first = resque.fingerprint(model, Subset(data, range(0, 25)), "1", progress=False)
    rest = resque.fingerprint(model, Subset(data, range(25, 60)), "1", progress=False)
    merged = first.merge(rest)
    assert torch.equal(merged.counts, whole.counts)
    assert torch.allclose(merged.sums, whole.sums, rtol=0, atol=1e-10)


def test_fingerprint_of_other_layer_is_refused():
    model = toy_cnn()
    data = patterned_images(5)
    fp = resque.fingerprint(model, data, "1", progress=False)
    with pytest.raises(resque.FingerprintError, match="layer '1'.*layer='2'"):
        resque.resque_dist(model, fp, data, "2", progress=False)


def test_fingerprint_of_other_weights_is_refused():
    data = patterned_images(5)
    fp = resque.fingerprint(toy_cnn(0), data, "1", progress=False)
    with pytest.raises(resque.FingerprintError, match="different model weights"):
        resque.resque_dist(toy_cnn(1), fp, data, "1", progress=False)
    # an explicit opt-out is honoured
    resque.resque_dist(toy_cnn(1), fp, data, "1", progress=False, check_model=False)


def test_corrupt_fingerprint_file_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(resque.FingerprintError, match="not a readable fingerprint"):
        resque.load_fingerprint(path)


def test_missing_fingerprint_file(tmp_path):
    with pytest.raises(resque.FingerprintError, match="No fingerprint file"):
        resque.load_fingerprint(tmp_path / "nothing.safetensors")


def test_safetensors_file_of_other_content_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(resque.FingerprintError, match="not a resque-fingerprint"):
        resque.load_fingerprint(path)


def test_progress_bar_can_be_shown_and_hidden(capsys):
    model = toy_cnn()
    data = patterned_images(5)
    resque.resque_dist(model, data, data, "1", progress=True)
    assert "embedding original" in capsys.readouterr().err
    resque.resque_dist(model, data, data, "1", progress=False)
    assert "embedding" not in capsys.readouterr().err


def test_fingerprint_of_a_model_with_batch_norm_buffers():
    # BatchNorm keeps a 0-dim integer buffer (num_batches_tracked) in its state dict.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    data = patterned_images(5)
    fp = resque.fingerprint(model, data, "0", progress=False)
    assert float(resque.resque_dist(model, fp, data, "0", progress=False)) == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        model[1].running_mean += 1.0  # a buffer, not a parameter, changed: still other weights
    with pytest.raises(resque.FingerprintError, match="different model weights"):
        resque.resque_dist(model, fp, data, "0", progress=False)
