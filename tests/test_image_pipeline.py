"""The image pipeline's fast paths: the decoded-image cache, and the crops, flips and tensor conversions that must
give torchvision's exact results with the same random draws."""
import numpy as np
import pytest
import torch

from lpft_bench.datamodules import build_datamodule, write_fake


class CountingReads(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images, self.reads = images, []

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.images[index]


def test_image_cache_reads_each_file_once_and_keeps_augmentation_random(tmp_path):
    root = write_fake("cifar10", tmp_path)

    def counted(set_name, **options):
        dm = build_datamodule("cifar10", data_root=str(root), data_config={"input_size": (3, 32, 32)}, **options)
        dm.setup()
        dataset = dm.splits.train if set_name == "train" else next(s.dataset for s in dm.eval_sets if s.name == set_name)
        dataset.images = CountingReads(dataset.images)
        return dataset, dataset.images.reads

    train, reads = counted("train", augment=True)
    first, second = train[0][0], train[0][0]
    assert reads == [0] and not torch.equal(first, second)  # decoded once, augmented afresh each time
    test_set, reads = counted("id_test")
    assert torch.equal(test_set[1][0], test_set[1][0]) and reads == [1]
    uncached, reads = counted("id_test", cache_mb=0)
    uncached[1], uncached[1]
    assert reads == [1, 1]


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_fast_random_crops_and_flips_draw_and_give_what_torchvision_does(interpolation):
    from PIL import Image
    from torchvision import transforms as tv
    from torchvision.transforms import InterpolationMode

    from lpft_bench.datamodules.transforms import RandomHorizontalFlip, RandomResizedCrop

    mode = InterpolationMode(interpolation)
    pairs = [(tv.RandomResizedCrop(32, interpolation=mode), RandomResizedCrop(32, interpolation=mode)),
             (tv.RandomResizedCrop((24, 40), scale=(0.5, 1.0), interpolation=mode),
              RandomResizedCrop((24, 40), scale=(0.5, 1.0), interpolation=mode)),
             (tv.RandomHorizontalFlip(0.5), RandomHorizontalFlip(0.5))]
    rng = np.random.default_rng(1)
    # Square, tall and wide images; 1 x 60 and 60 x 1 leave no crop but torchvision's central fallback.
    sizes = [(32, 32), (37, 29), (29, 37), (64, 48), (32, 32), (1, 60), (60, 1), (5, 5)]
    for (width, height), image_mode in zip(sizes * 8, ["L", "RGB"] * 32):
        channels = (3,) if image_mode == "RGB" else ()
        image = Image.fromarray(rng.integers(0, 256, (height, width, *channels), dtype=np.uint8), image_mode)
        for theirs, ours in pairs:
            torch.manual_seed(int(rng.integers(1 << 31)))
            state = torch.get_rng_state()
            expected = np.asarray(theirs(image))
            after_theirs = torch.get_rng_state()
            torch.set_rng_state(state)
            got = np.asarray(ours(image))
            assert torch.equal(torch.get_rng_state(), after_theirs)  # the same draws: later augmentations agree
            assert got.shape == expected.shape and np.array_equal(got, expected)


@pytest.mark.parametrize("mode,shape,mean,std", [("L", (37, 29), (0.5,), (0.25,)),
                                                 ("RGB", (37, 29, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_fast_to_tensor_and_normalize_give_torchvisions_exact_tensors(mode, shape, mean, std):
    from PIL import Image
    from torchvision import transforms as tv

    from lpft_bench.datamodules.transforms import Normalize, ToTensor

    rng = np.random.default_rng(0)
    for _ in range(5):
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
        expected, got = tv.ToTensor()(image), ToTensor()(image)
        assert got.dtype == expected.dtype and got.is_contiguous() and torch.equal(got, expected)
        assert torch.equal(Normalize(mean, std)(got), tv.Normalize(mean, std)(expected))
