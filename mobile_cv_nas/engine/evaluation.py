"""Top-1/top-5 accuracy of a classifier over an evaluation loader, summed over processes."""

import torch
from detectron2.utils import comm


@torch.no_grad()
def evaluate_classifier(model, loader, device="cpu"):
    """{"top1": %, "top5": %, "count": n} over every sample of `loader` on every process
    (each process holds its shard; the counts are summed over processes)."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64)
    for images, labels in loader:
        logits = model(images.to(device))
        labels = labels.to(device)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(labels[:, None])
        counts += torch.tensor(
            [hits[:, 0].sum().item(), hits.any(dim=1).sum().item(), len(labels)],
            dtype=torch.float64,
        )
    model.train(was_training)
    if comm.get_world_size() > 1:
        counts = sum(comm.all_gather(counts))
    top1, top5, n = counts.tolist()
    if n == 0:
        raise ValueError("The evaluation loader yielded no samples.")
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "count": int(n)}
