"""TASK: detection: detectron2 detectors (Faster/Mask R-CNN, RetinaNet) with FBNetV2 backbones,
trained and evaluated by tools/train_net.py (configs/detection).

    python tools/train_net.py --config-file configs/detection/faster_rcnn_fbnetv2_f4_fpn.yaml
    python tools/train_net.py --eval-only --config-file CONFIG MODEL.WEIGHTS model_final.pth

What this adds to detectron2's DefaultTrainer:

* datasets: detectron2's builtin names (coco_2017_train, ... under $DETECTRON2_DATASETS), or
  the user's COCO-format json files registered from the config:
  `DATASETS.COCO_JSON: [[name, json_file, image_root], ...]` (detectron2's
  `register_coco_instances`; relative paths are taken from the working directory). An unknown
  name or a missing file is an error before anything runs, and so is a bad entry of a
  DATASETS.COCO_JSON json used in DATASETS.TRAIN / TEST, a missing or unreadable image, an
  image of another size than its json entry, or NUM_CLASSES other than the datasets'
  number of categories (check_coco_datasets; mobile_cv_nas.detection.coco_check);
* MODEL.WEIGHTS is loaded with FBNetV2DetectionCheckpointer: a detection checkpoint, or an
  ImageNet classification checkpoint (`fbnet_zoo://FBNetV2_F4`, a path or URL) converted onto
  the backbone; weights that do not fit the model (another arch, detector or backbone) are
  refused with the key report, unless MODEL.ALLOW_PARTIAL_WEIGHTS (detection/weights_fit.py).
  Frozen stages (MODEL.BACKBONE.FREEZE_AT) that the weights do not fill are a warning: they
  would train at their random initial values;
* the schedule: BASE_LR and WARMUP_ITERS fitted to the run's batch and length
  (SOLVER.REFERENCE_IMS_PER_BATCH, engine/detection_schedule.py);
* evaluation: COCOEvaluator (pure-Python COCOeval) on every DATASETS.TEST, on every process;
  a model that made no detections scores AP 0, not NaN (detection/coco_evaluation.py);
  --eval-only writes into a folder of its own, OUTPUT_DIR/TEST.EVAL_ONLY_DIR (default
  OUTPUT_DIR/eval), so a training run's files are never changed by evaluating its weights;
* several CPU processes: detectron2's create_ddp_model with device_ids=None (its default
  names a GPU);
* SOLVER.AMP.ENABLED picks detectron2's AMPTrainer, which in detectron2 0.6 runs on CUDA
  only: on the CPU the flag is a config error. SOLVER.EPOCHS is not read (the length is
  SOLVER.MAX_ITER): > 0 is a config error;
* SEED (+ the process rank) seeds python, numpy and torch before the model is built; the
  training data and each step's random numbers are a pure function of (SEED, iteration)
  (detection.train_stream), and a checkpoint holds the optimizer's state: on the CPU one SEED
  gives the same weights, losses and AP with any DATALOADER.NUM_WORKERS, and --resume after a
  kill gives the weights of an uninterrupted run;
* a non-finite loss or prediction (detectron2's FloatingPointError) or weight (checked before
  each checkpoint, CheckpointHook) ends the run with one line naming the last good checkpoint;
* nothing is written before the model, the data and the weights are checked; what is logged
  meanwhile (detectron2's dataset summary, class histogram, augmentations, the model, the
  weights report) is held and written to log.txt and stdout once they exist
  (run_setup.held_logs); the run's writers (events.json, TensorBoard) start with the
  training. The final COCO results go to OUTPUT_DIR/metrics.json (train) or
  metrics_eval.json in the --eval-only folder.
"""

import difflib
import logging
import math
import os
import weakref

import detectron2.data  # noqa: F401  (registers the builtin datasets)
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from ..detection import (
    ZOO_PREFIX,
    FBNetV2DetectionCheckpointer,
    add_fbnetv2_config,
    check_coco_json,
    check_image_files,
    check_registered_names,
    zoo_weights_file,
)
from ..detection.classification_loading import grouped_keys
from ..detection.coco_evaluation import FBNetV2COCOEvaluator
from ..detection.detectron2_compat import class_histogram_numpy
from ..detection.train_stream import build_train_stream, seed_step
from ..io import write_json
from .detection_schedule import fit_schedule
from .divergence import last_good_checkpoint, non_finite_error
from .errors import ConfigError, DetectionDataError
from .hooks import CheckpointHook
from .run_setup import held_logs, setup_run
from .trainer_base import (
    DeferredWriter,
    quiet_non_finite_loss_tracebacks,
    run_writers,
    wrap_ddp,
)

logger = logging.getLogger(__name__)

#: Names this module registered, {name: (json_file, image_root)}: registering again with the
#: same files is a no-op (a second run in one process), with other files it replaces them.
_REGISTERED = {}


def add_detection_config(cfg):
    """MODEL.MOBILE_CV_NAS.* (mobile_cv_nas.detection) and DATASETS.COCO_JSON."""
    add_fbnetv2_config(cfg)
    if "COCO_JSON" not in cfg.DATASETS:
        # [[name, json_file, image_root], ...]: COCO-format datasets to register by name
        cfg.DATASETS.COCO_JSON = []
    if "COCO_JSON_IMAGE_CHECK" not in cfg.DATASETS:
        # how the images of a DATASETS.COCO_JSON dataset are checked before a run: "decode"
        # (every image read whole: a truncated file is found) or "header" (its size only,
        # faster for large datasets)
        cfg.DATASETS.COCO_JSON_IMAGE_CHECK = "decode"
    if "ALLOW_PARTIAL_WEIGHTS" not in cfg.MODEL:
        # True: MODEL.WEIGHTS that do not fit the model (keys it does not have, of another
        # shape, FBNet stages not filled) load what fits, with a warning (e.g. a new head on
        # a trained trunk); False: they are refused (detection/weights_fit.py)
        cfg.MODEL.ALLOW_PARTIAL_WEIGHTS = False
    if "REFERENCE_IMS_PER_BATCH" not in cfg.SOLVER:
        # the total batch SOLVER.BASE_LR is set for: > 0 scales BASE_LR to the run's
        # IMS_PER_BATCH and keeps WARMUP_ITERS within a tenth of MAX_ITER; 0: as given
        # (engine/detection_schedule.py)
        cfg.SOLVER.REFERENCE_IMS_PER_BATCH = 0
    if "EVAL_ONLY_DIR" not in cfg.TEST:
        # where --eval-only writes (config.yaml, log.txt, metrics_eval.json, inference/): a
        # folder under OUTPUT_DIR, or an absolute path; never OUTPUT_DIR itself
        cfg.TEST.EVAL_ONLY_DIR = "eval"
    return cfg


# ------------------------------------------------------------------------------ datasets


def register_coco_json(cfg):
    """Register DATASETS.COCO_JSON (idempotent in one process; run in every process)."""
    for entry in cfg.DATASETS.COCO_JSON:
        if isinstance(entry, str) or len(entry) != 3:
            raise DetectionDataError(
                f"DATASETS.COCO_JSON entry {entry!r}: each entry is [name, json_file, image_root]."
            )
        name, json_file, image_root = (str(x) for x in entry)
        if not os.path.isfile(json_file):
            raise DetectionDataError(
                f"DATASETS.COCO_JSON {name!r}: json file {json_file!r} does not exist."
            )
        if not os.path.isdir(image_root):
            raise DetectionDataError(
                f"DATASETS.COCO_JSON {name!r}: image folder {image_root!r} does not exist."
            )
        files = (os.path.abspath(json_file), os.path.abspath(image_root))
        if _REGISTERED.get(name) == files:
            continue
        if name in DatasetCatalog.list():
            if name not in _REGISTERED:
                raise DetectionDataError(
                    f"DATASETS.COCO_JSON: {name!r} is already a registered dataset (e.g. one "
                    f"of detectron2's builtin names); give your json another name."
                )
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, *files)
        _REGISTERED[name] = files


def check_datasets(cfg, train=True):
    """Every DATASETS.TRAIN (when `train`) and DATASETS.TEST name is registered, and its json
    (when its metadata names one) exists."""
    names = list(cfg.DATASETS.TEST)
    if train:
        if not cfg.DATASETS.TRAIN:
            raise DetectionDataError("DATASETS.TRAIN is empty: name the training dataset(s).")
        names = list(cfg.DATASETS.TRAIN) + names
    known = DatasetCatalog.list()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DetectionDataError(
                f"Dataset {name!r} is not registered.{hint} Register a COCO-format json in the "
                f"config with DATASETS.COCO_JSON [[{name!r}, 'annotations.json', "
                f"'image_folder']], or use one of detectron2's builtin names (coco_2017_train, "
                f"coco_2017_val, ... under $DETECTRON2_DATASETS)."
            )
        json_file = MetadataCatalog.get(name).get("json_file")
        if json_file and not os.path.isfile(json_file):
            raise DetectionDataError(
                f"Dataset {name!r}: its annotation file {json_file!r} does not exist (for "
                f"detectron2's builtin names, set $DETECTRON2_DATASETS to the folder holding "
                f"coco/)."
            )


#: The key of the number of classes, per meta-architecture (others predict no classes).
NUM_CLASSES_KEYS = {
    "GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES",
    "PanopticFPN": "MODEL.ROI_HEADS.NUM_CLASSES",
    "RetinaNet": "MODEL.RETINANET.NUM_CLASSES",
}


def check_coco_datasets(cfg, train=True):
    """The data of a run, before it starts: every DATASETS.COCO_JSON json used in
    DATASETS.TRAIN (when `train`) or DATASETS.TEST is checked entry by entry (coco_check), its
    categories are the same as every other used dataset's (detectron2's builtin ones by their
    metadata) and as many as the model's NUM_CLASSES, then its image files are checked
    (DATASETS.COCO_JSON_IMAGE_CHECK). Builtin names: their class count only (their json is
    not read: COCO train2017's takes longer to read than a short run)."""
    names = list(dict.fromkeys([*(cfg.DATASETS.TRAIN if train else ()), *cfg.DATASETS.TEST]))
    files = {str(entry[0]): entry for entry in cfg.DATASETS.COCO_JSON}
    checked, classes = [], {}
    for name in names:
        if name not in files:
            classes[name] = MetadataCatalog.get(name).get("thing_classes")
            continue
        _, json_file, image_root = (str(x) for x in files[name])
        one = check_coco_json(
            json_file,
            image_root,
            train=train and name in cfg.DATASETS.TRAIN,
            evaluate=name in cfg.DATASETS.TEST,
            need_masks=cfg.MODEL.MASK_ON,
            mask_format=cfg.INPUT.MASK_FORMAT,
            where=f"DATASETS.COCO_JSON {name!r} ({json_file})",
        )
        for line in one.warnings:
            logger.warning(line)
        checked.append(one)
        classes[name] = one.classes
    _check_classes(cfg, {name: c for name, c in classes.items() if c is not None})
    for one in checked:
        check_image_files(one, decode=cfg.DATASETS.COCO_JSON_IMAGE_CHECK == "decode")


def _check_classes(cfg, classes):
    """Every used dataset has the same categories (model class i is the i-th category by id
    in each), and NUM_CLASSES of them."""
    if not classes:
        return
    (first, first_classes), *others = classes.items()
    for name, names in others:
        if names == first_classes:
            continue
        only_first = _listed([c for c in first_classes if c not in names])
        only_other = _listed([c for c in names if c not in first_classes])
        what = f"{only_first} only in {first!r}, {only_other} only in {name!r}"
        if set(names) == set(first_classes):
            what = f"the same names in another id order ({_listed(names)} in {name!r})"
        raise DetectionDataError(
            f"Datasets {first!r} and {name!r} have other categories: {what}. The model's class i "
            f"is the i-th category by id in each json: give them the same categories, same ids."
        )
    key = NUM_CLASSES_KEYS.get(cfg.MODEL.META_ARCHITECTURE)
    if key is None:
        return
    value = cfg.MODEL[key.split(".")[1]].NUM_CLASSES
    if value != len(first_classes):
        count = len(first_classes)
        raise DetectionDataError(
            f"{key} = {value}, but dataset {first!r} has {count} categories "
            f"{_listed(first_classes)}: set {key} {count} (detectron2 maps the category ids, "
            f"in order, to the classes 0..{count - 1})."
        )


def _listed(names, limit=5):
    shown = ", ".join(map(repr, names[:limit])) + (", ..." if len(names) > limit else "")
    return f"[{shown}]"


def check_detection_config(cfg, train=True):
    """The checks of a detection config that need no model: registry names, datasets and
    their files, the weights file. Runs before anything is written, in the launching process
    (its workers only register the datasets)."""
    check_registered_names(cfg)
    if train:
        check_detection_schedule(cfg)
    if not train:
        check_eval_only_dir(cfg)
    register_coco_json(cfg)
    check_datasets(cfg, train=train)
    weights = cfg.MODEL.WEIGHTS
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise ConfigError(f"MODEL.WEIGHTS {weights!r}: no such file.")
    check_coco_datasets(cfg, train=train)  # after the quick checks: it reads every image
    if weights.startswith(ZOO_PREFIX):
        zoo_weights_file(weights[len(ZOO_PREFIX) :].strip("/"))


#: Files of a training run: a folder holding one is not an --eval-only folder.
_TRAINING_FILES = ("last_checkpoint", "metrics.json", "events.json")


def eval_only_dir(cfg):
    """The folder --eval-only writes to: TEST.EVAL_ONLY_DIR, under OUTPUT_DIR when relative."""
    return os.path.normpath(os.path.join(cfg.OUTPUT_DIR, cfg.TEST.EVAL_ONLY_DIR))


def check_eval_only_dir(cfg):
    """The --eval-only folder is not OUTPUT_DIR (the training run's files stay as they are),
    not a file, and holds no training run."""
    folder, key = eval_only_dir(cfg), f"TEST.EVAL_ONLY_DIR {cfg.TEST.EVAL_ONLY_DIR!r}"
    if os.path.realpath(folder) == os.path.realpath(cfg.OUTPUT_DIR):
        raise ConfigError(
            f"{key} is OUTPUT_DIR itself: --eval-only writes into a folder of its own so that "
            f"the training run's config.yaml, log.txt and inference/ stay as they are. Give a "
            f"subfolder name (default 'eval') or another path."
        )
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"{key}: {folder!r} is a file; give a folder.")
    if os.path.isdir(folder):
        found = [f for f in _TRAINING_FILES if os.path.exists(os.path.join(folder, f))]
        found += sorted(f for f in os.listdir(folder) if f.endswith(".pth"))
        if found:
            raise ConfigError(
                f"{key}: {folder!r} holds a training run ({', '.join(found[:3])}), whose "
                f"files --eval-only would overwrite; give another folder."
            )


def check_detection_schedule(cfg):
    """The solver keys a detection run reads: SOLVER.MAX_ITER (not SOLVER.EPOCHS), and
    SOLVER.AMP.ENABLED only on CUDA."""
    if cfg.SOLVER.EPOCHS > 0:
        raise ConfigError(
            f"SOLVER.EPOCHS = {cfg.SOLVER.EPOCHS}: a detection run trains SOLVER.MAX_ITER "
            f"iterations and does not read SOLVER.EPOCHS. Set SOLVER.EPOCHS 0 and give the "
            f"length as SOLVER.MAX_ITER."
        )
    if cfg.SOLVER.AMP.ENABLED and torch.device(cfg.MODEL.DEVICE).type != "cuda":
        raise ConfigError(
            f"SOLVER.AMP.ENABLED True with MODEL.DEVICE {cfg.MODEL.DEVICE!r}: detectron2 "
            f"0.6's AMPTrainer (torch.cuda.amp autocast and GradScaler) trains on CUDA only. "
            f"Set SOLVER.AMP.ENABLED False to train on the CPU, or MODEL.DEVICE cuda."
        )


def seed_detection(cfg):
    """Seed python, numpy and torch as detectron2's default_setup does (SEED + rank), before
    the model (its initial weights) is built: the same SEED gives the same run."""
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + comm.get_rank())


# ------------------------------------------------------------------------------ trainer


class DetectionTrainer(DefaultTrainer):
    """detectron2's DefaultTrainer, composed from its pieces as its __init__ composes them
    (auto_scale_workers, create_ddp_model with broadcast_buffers=False, AMPTrainer or
    SimpleTrainer by SOLVER.AMP.ENABLED, its hooks), with FBNetV2DetectionCheckpointer,
    COCOEvaluator (pure Python), DDP that works on CPU (device_ids=None) and the project's
    writers, made when training starts; its loader and step RNG are detection.train_stream's
    (a pure function of SEED and the iteration) and its checkpoints hold the optimizer."""

    def __init__(self, cfg, model=None):
        # DefaultTrainer.__init__ builds the model itself (here it comes built, its weights
        # loaded and checked), passes DDP a GPU's device_ids (torch refuses them for a CPU
        # module) and makes the writers' files at once: its pieces, composed here
        TrainerBase.__init__(self)
        quiet_non_finite_loss_tracebacks()
        cfg = fit_schedule(cfg)  # first: auto_scale_workers scales batch and LR together
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = model if model is not None else self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        ddp = wrap_ddp(model, cfg.MODEL.DEVICE, broadcast_buffers=False)
        step = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = step(ddp, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = FBNetV2DetectionCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self._last_eval_results = {}
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        made = super().build_hooks()
        # the writers' files are made when training starts (a failed start leaves no files)
        writer = DeferredWriter(lambda: run_writers(self.cfg.OUTPUT_DIR, self.max_iter), 20)
        made = [writer if isinstance(h, hooks.PeriodicWriter) else h for h in made]
        # detectron2's checkpoints (model_XXXXXXX, every one kept), each refused when a weight
        # is not finite: the last one stays good (a diverged run's message names it)
        made = [h for h in made if not isinstance(h, hooks.PeriodicCheckpointer)]
        checkpoints = CheckpointHook(
            self.checkpointer,
            self.cfg.SOLVER.CHECKPOINT_PERIOD,
            keep=None,
            file_prefix="model",
            learning_rates="SOLVER.BASE_LR",
        )
        made.insert(
            next(i for i, h in enumerate(made) if isinstance(h, hooks.EvalHook)), checkpoints
        )
        return made

    def build_writers(self):
        return []  # DefaultTrainer.build_hooks calls this; DeferredWriter makes the real ones

    @classmethod
    def build_train_loader(cls, cfg):
        with class_histogram_numpy():  # detectron2 0.6's class histogram under NumPy 2
            return build_train_stream(cfg)

    def resume_or_load(self, resume=True):
        """DefaultTrainer's, then the data continue at the start iteration."""
        super().resume_or_load(resume=resume)
        self._trainer.data_loader.start_at(self.start_iter)

    def state_dict(self):
        """The iteration and the hooks' state (the LR schedule), the step's (the optimizer,
        AMP's grad scaler: detectron2 0.6's DefaultTrainer leaves them out, so a resumed run
        lost the momentum) and what identifies the data stream."""
        state = TrainerBase.state_dict(self)
        state["_trainer"] = self._trainer.state_dict()
        state["data_stream"] = self._trainer.data_loader.state_dict()
        return state

    def load_state_dict(self, state):
        TrainerBase.load_state_dict(self, state)
        if "_trainer" in state:  # not in a checkpoint of before it was saved
            self._trainer.load_state_dict(state["_trainer"])
        changed = self._trainer.data_loader.differences(state.get("data_stream", {}))
        if "data_stream" in state and changed:
            logger.warning(
                f"The resumed run's training data differ from the checkpoint's "
                f"({', '.join(changed)}): it continues, but not as the run would have."
            )

    def run_step(self):
        seed_step(self._trainer.data_loader.seed, comm.get_rank(), self.iter)
        try:
            super().run_step()
        except FloatingPointError as e:
            # detectron2's: "Loss became infinite or NaN ... loss_dict = {...}" (the losses),
            # or "Predicted boxes or scores contain Inf/NaN. Training has diverged." (RPN)
            message = " ".join(str(e).split())
            what = f"model output ({message})"
            if "loss_dict = " in message:
                what = f"training loss ({message.split('loss_dict = ', 1)[1]})"
            last = last_good_checkpoint(self.checkpointer)
            raise non_finite_error(what, self.iter, last, "SOLVER.BASE_LR") from None

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        # the tasks named (not guessed from the detections): a mask model that made no
        # detections is scored on both
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
        return FBNetV2COCOEvaluator(dataset_name, tasks, output_dir=folder, use_fast_impl=False)

    @classmethod
    def evaluate(cls, cfg, model):
        """{dataset name: {task ("bbox", "segm"): {"AP": ..., "AP50": ..., ...}}} on every
        DATASETS.TEST (every process runs it; only the main one gets the results)."""
        results = {}
        for name in cfg.DATASETS.TEST:
            one = cfg.clone()
            one.defrost()
            one.DATASETS.TEST = (name,)
            results[name] = cls.test(one, model) or {}
        return results


# ------------------------------------------------------------------------------ the task


def _build_checked_model(cfg):
    """The detector (logged, as DefaultTrainer.build_model does) with MODEL.WEIGHTS loaded,
    and their WeightsFit (None without weights); every error of the config, the arch, the
    features and the weights comes from here, before anything is written."""
    check_registered_names(cfg)
    model = DetectionTrainer.build_model(cfg)
    checkpointer = FBNetV2DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    if cfg.MODEL.WEIGHTS:
        checkpointer.load_weights(cfg.MODEL.WEIGHTS, allow_partial=cfg.MODEL.ALLOW_PARTIAL_WEIGHTS)
    return model, checkpointer.weights_fit


def _warn_frozen_random(cfg, model, fit):
    """A frozen parameter the weights did not fill keeps its random initial value for the
    whole run: said in a warning (MODEL.WEIGHTS "" with the configs' FREEZE_AT 2)."""
    loaded = set(fit.loaded) if fit is not None else set()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and n not in loaded]
    if not frozen:
        return
    weights = repr(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else '"" (no weights)'
    blocks = grouped_keys(frozen, by_block=True)
    logger.warning(
        f"MODEL.BACKBONE.FREEZE_AT {cfg.MODEL.BACKBONE.FREEZE_AT} freezes {len(frozen)} "
        f"parameters ({blocks}) that MODEL.WEIGHTS {weights} does not fill: they keep their "
        f"random initial values for the whole run. Set MODEL.BACKBONE.FREEZE_AT 0 to train "
        f"them, or give weights that fill the backbone (e.g. MODEL.WEIGHTS "
        f"fbnet_zoo://<arch>, its ImageNet weights)."
    )


def _ap_line(results):
    parts = []
    for dataset, tasks in results.items():
        for task, metrics in tasks.items():
            ap = metrics.get("AP", float("nan"))
            ap50 = metrics.get("AP50", float("nan"))
            parts.append(f"{dataset} {task} AP {ap:.2f} AP50 {ap50:.2f}")
    return "; ".join(parts) or "no DATASETS.TEST"


def _flat(results):
    """Plain JSON of COCO results: floats, NaN (a metric COCOeval cannot compute, e.g. APl
    without large objects) as null."""

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        value = float(value)
        return value if math.isfinite(value) else None

    return plain(results)


def run_detection(cfg, args):
    """Train (then evaluate on DATASETS.TEST) or, with --eval-only, evaluate MODEL.WEIGHTS.
    The config and its data were checked by setup_cfg; each process registers the datasets."""
    register_coco_json(cfg)
    seed_detection(cfg)
    if args.eval_only:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = eval_only_dir(cfg)  # the training run's folder is left as it is
        cfg.freeze()
        with held_logs() as held:
            model, _ = _build_checked_model(cfg)
            setup_run(cfg, args, held=held)
        results = DetectionTrainer.evaluate(cfg, model)
        metrics = {"task": "eval", "weights": cfg.MODEL.WEIGHTS, "results": _flat(results)}
        if comm.is_main_process():
            logger.info(f"COCO evaluation: {_ap_line(results)}")
            write_json(os.path.join(cfg.OUTPUT_DIR, "metrics_eval.json"), metrics)
        return metrics

    resuming = args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    with held_logs() as held:
        if resuming:
            check_registered_names(cfg)
            model = DetectionTrainer.build_model(cfg)
        else:
            model, fit = _build_checked_model(cfg)
            _warn_frozen_random(cfg, model, fit)
        trainer = DetectionTrainer(cfg, model)
        if resuming:  # fails here, before writing, when the checkpoint does not load
            trainer.resume_or_load(resume=True)
        setup_run(cfg, args, resumed=resuming, held=held)
    logger.info(
        f"Detection: {cfg.MODEL.META_ARCHITECTURE} with {cfg.MODEL.BACKBONE.NAME} "
        f"({cfg.MODEL.MOBILE_CV_NAS.ARCH or 'inline arch'}) on {list(cfg.DATASETS.TRAIN)}, "
        f"{cfg.SOLVER.MAX_ITER} iterations from {trainer.start_iter}."
    )
    trainer.train()
    results = trainer._last_eval_results or {}
    if len(cfg.DATASETS.TEST) == 1 and results and cfg.DATASETS.TEST[0] not in results:
        results = {cfg.DATASETS.TEST[0]: results}  # DefaultTrainer.test unwraps one dataset
    metrics = {
        "task": "detection",
        "weights": cfg.MODEL.WEIGHTS,
        "iterations": trainer.max_iter,
        "results": _flat(results),
    }
    if comm.is_main_process():
        logger.info(f"COCO evaluation: {_ap_line(results)}")
        write_json(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), metrics)
    comm.synchronize()
    return metrics
