"""COCO evaluation of a model that made no detections: AP 0, not NaN.

detectron2's COCOEvaluator does not run COCOeval on an empty list of detections and reports
every metric as NaN (written as null), the same as a metric COCO cannot compute. But a model
that detects nothing has precision and recall 0 wherever there is ground truth: COCOeval
itself scores an image with ground truth and no detections 0. So here, with no detections,
a metric is 0 where the dataset has ground truth for it (AP, AP50, AP75: any non-crowd
object; APs / APm / APl: one of that area, COCO's ranges; AP-<class>: one of that class),
and stays NaN where it has none (APl without large objects), as it would with detections.
The evaluator says so in a warning naming the dataset.
"""

import logging
import math

from detectron2.evaluation import COCOEvaluator

logger = logging.getLogger(__name__)

#: COCOeval's area ranges (its `areaRng`, inclusive) of the area metrics.
AREA_RANGES = {"APs": (0, 32**2), "APm": (32**2, 96**2), "APl": (96**2, 1e5**2)}


class FBNetV2COCOEvaluator(COCOEvaluator):
    """detectron2's COCOEvaluator; a model with no detections scores 0 (module docstring)."""

    def _eval_predictions(self, predictions, img_ids=None):
        super()._eval_predictions(predictions, img_ids=img_ids)
        if not self._do_evaluation or any(p.get("instances") for p in predictions):
            return
        tasks = [t for t in self._results if t in ("bbox", "segm")]
        undefined = set()
        for task in tasks:
            self._results[task] = self._no_detection_results(self._results[task], img_ids)
            undefined |= {k for k, v in self._results[task].items() if math.isnan(v)}
        verb = "stays" if len(undefined) == 1 else "stay"
        left = (
            f"; {', '.join(sorted(undefined))} {verb} undefined (NaN: no ground truth to find)"
            if undefined
            else ""
        )
        logger.warning(
            f"The model made no detections on {self._metadata.name!r}: its COCO "
            f"{'/'.join(tasks)} AP is 0{left}."
        )

    def _ground_truth(self, img_ids):
        """The non-crowd annotations COCOeval scores (of `img_ids`, when given)."""
        wanted = None if img_ids is None else set(img_ids)
        return [
            a
            for a in self._coco_api.dataset.get("annotations", [])
            if not a.get("iscrowd", 0) and (wanted is None or a["image_id"] in wanted)
        ]

    def _no_detection_results(self, results, img_ids):
        truth = self._ground_truth(img_ids)
        out = {}
        for metric in results:
            low, high = AREA_RANGES.get(metric, (-math.inf, math.inf))
            found = any(low <= a.get("area", 0) <= high for a in truth)
            out[metric] = 0.0 if found else float("nan")
        names = self._metadata.get("thing_classes")
        if names and len(names) > 1:  # COCOEvaluator adds AP-<class> for several classes
            mapping = self._metadata.get("thing_dataset_id_to_contiguous_id") or {}
            to_dataset = {v: k for k, v in mapping.items()}
            present = {a["category_id"] for a in truth}
            for i, name in enumerate(names):
                out[f"AP-{name}"] = 0.0 if to_dataset.get(i, i) in present else float("nan")
        return out
