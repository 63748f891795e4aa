"""Classification data for the search: datasets by name (the embedded or full Fashion-MNIST,
or a folder of class subfolders), class subsets and the 80/20 weight/architecture split,
deterministic resumable batches, and the transforms. detectron2-free."""

from .build import BUILTINS, build_classification_dataset
from .errors import DatasetError
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .fashion_mnist import IdxDataset
from .idx import read_idx
from .image_check import describe_bad_images, find_bad_images, image_problem
from .image_folder import ImageFolderDataset
from .image_modes import load_image, to_mode
from .loaders import SeededTransformDataset, build_eval_loader, build_train_loader, eval_indices
from .sampler import EpochBatchSampler, epoch_order, hash_seed, sample_seed
from .subsets import ClassSubset, apply_class_subset, choose_classes, class_subset, split_indices
from .transforms import default_mean_std, eval_transform, train_transform

__all__ = [
    "BUILTINS",
    "ClassSubset",
    "DatasetError",
    "EpochBatchSampler",
    "FASHION_MNIST_CLASSES",
    "IdxDataset",
    "ImageFolderDataset",
    "SeededTransformDataset",
    "apply_class_subset",
    "build_classification_dataset",
    "build_eval_loader",
    "build_train_loader",
    "choose_classes",
    "class_subset",
    "default_mean_std",
    "describe_bad_images",
    "epoch_order",
    "eval_indices",
    "eval_transform",
    "find_bad_images",
    "hash_seed",
    "image_problem",
    "load_image",
    "read_idx",
    "sample_seed",
    "split_indices",
    "to_mode",
    "train_transform",
]
