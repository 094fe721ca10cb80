"""mmdeploy rewrites: mmseg's heads made to serve every input size from one ONNX file, and
mmdet's two-stage detectors made to compute what mmdet computes.

Two of mmseg's modules fix sizes of the export input in the graph, whatever the backbone:

- ``Upsample`` (Semantic FPN's scale heads) computes its output size as
  ``int(size * scale_factor)`` in Python, which the tracer records as a constant;
- UperNet's pyramid pooling (``PPM``) pools to 1, 2, 3 and 6 bins with
  ``adaptive_avg_pool2d``, which mmdeploy replaces by an average pool whose kernel is fixed
  from the export size (and which fails outright when the map is smaller than the bins).

The rewrites here compute both from the traced size instead, with the forwards of
:mod:`mmhire.deployment.any_size` (which the dynamo export of a whole segmentor uses too).

For mmdet, with ONNX Runtime: the RPN as mmdet does it (NMS within each FPN level, no score
threshold; mmdeploy 1.3's suppresses across levels and drops proposals under the detector's
threshold), and Cascade R-CNN's box stages with class-aware regression (mmdeploy's asserts
class-agnostic regression).

They are registered with mmdeploy when this module is
imported, which ``import mmhire`` does when mmdeploy is already imported, and mmhire's deploy
configs do through ``codebase_config.module``.
"""
import torch
from mmdeploy.core import FUNCTION_REWRITER

from .any_size import adaptive_avg_pool2d_any_size, ppm_forward, upsample_forward

try:  # mmdet is needed by the detector rewrites only
    from mmdet.structures.bbox import get_box_tensor
except ImportError:  # pragma: no cover
    get_box_tensor = None


@FUNCTION_REWRITER.register_rewriter(func_name='mmseg.models.decode_heads.psp_head.PPM.forward')
def ppm__forward(self, x: torch.Tensor):
    """PPM's forward with the exact adaptive pool of any input size."""
    return ppm_forward(self, x)


@FUNCTION_REWRITER.register_rewriter(func_name='mmseg.models.utils.wrappers.Upsample.forward')
def upsample__forward(self, x: torch.Tensor):
    """Upsample's forward with the output size computed in the graph (integer factors), so
    it follows the input's size; other factors keep mmseg's own computation."""
    ctx = FUNCTION_REWRITER.get_context()
    return upsample_forward(self, x, fallback=ctx.origin_func)


@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_bbox',
    backend='openvino')
@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_bbox',
    backend='onnxruntime')
def cascade_roi_head__predict_bbox(self, x, batch_img_metas, rpn_results_list, rcnn_test_cfg,
                                   rescale: bool = False, **kwargs):
    """Cascade R-CNN's box stages for export, with class-aware regression as well as
    class-agnostic (mmdeploy 1.3's own rewrite asserts the latter; mmhire's Cascade configs
    regress per class). Between stages, each proposal moves by the deltas of its best
    foreground class, as mmdet's ``regress_by_class`` does; registered for ONNX Runtime and
    OpenVINO, where it takes precedence over mmdeploy's default rewrite."""
    proposals = rpn_results_list[0]  # (B, N, 5): boxes and scores
    batch, num = proposals.shape[0], proposals.shape[1]
    batch_index = torch.arange(batch, device=proposals.device).to(proposals.dtype).view(
        -1, 1, 1).expand(batch, num, 1)
    rois = torch.cat([batch_index, proposals[..., :4]], dim=-1).reshape(-1, 5)
    max_shape = batch_img_metas[0]['img_shape']
    scores = []
    for stage in range(self.num_stages):
        results = self._bbox_forward(stage, x, rois, **kwargs)
        cls_score = results['cls_score'].reshape(batch, num, -1)
        bbox_pred = results['bbox_pred'].reshape(batch, num, -1)
        scores.append(cls_score)
        if stage == self.num_stages - 1:
            break
        head = self.bbox_head[stage]
        if not head.reg_class_agnostic:
            size = getattr(head.bbox_coder, 'encode_size', 4)
            label = cls_score[..., :-1].argmax(dim=-1)  # the background score is last
            deltas = bbox_pred.reshape(batch, num, -1, size)
            index = label[..., None, None].expand(batch, num, 1, size)
            bbox_pred = deltas.gather(2, index).squeeze(2)
        boxes = get_box_tensor(head.bbox_coder.decode(
            rois.reshape(batch, num, 5)[..., 1:], bbox_pred, max_shape=max_shape))
        rois = torch.cat([batch_index, boxes], dim=-1).reshape(-1, 5)
    return self.bbox_head[-1].predict_by_feat(
        rois=rois.reshape(batch, num, 5),
        cls_scores=sum(scores) / float(len(scores)),
        bbox_preds=bbox_pred,
        batch_img_metas=batch_img_metas,
        rcnn_test_cfg=rcnn_test_cfg,
        rescale=rescale)


@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
    backend='openvino')
@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
    backend='onnxruntime')
def rpn_head__predict_by_feat(self, cls_scores, bbox_preds, score_factors=None,
                              batch_img_metas=None, cfg=None, rescale: bool = False,
                              with_nms: bool = True, **kwargs):
    """The RPN's proposals as mmdet computes them, for export: per level the ``nms_pre``
    best anchors, decoded and clipped; boxes not wider and taller than ``min_bbox_size``
    dropped; NMS within each level (mmdet's ``batched_nms`` with the level as the class),
    then the ``max_per_img`` best. mmdeploy 1.3's own rewrite suppresses across levels and
    drops proposals scoring under the detector's score threshold, which picks other
    proposals than mmdet. Returns ``(dets, labels)`` as mmdeploy's two-stage heads expect,
    ``labels`` being each proposal's level."""
    from mmdeploy.mmcv.ops import multiclass_nms

    cfg = self.test_cfg if cfg is None else cfg
    num_levels = len(cls_scores)
    batch = cls_scores[0].shape[0]
    priors = self.prior_generator.grid_priors(
        [score.shape[-2:] for score in cls_scores], dtype=bbox_preds[0].dtype,
        device=bbox_preds[0].device)
    nms_pre = cfg.get('nms_pre', -1)
    min_size = cfg.get('min_bbox_size', -1)
    img_shape = batch_img_metas[0]['img_shape']
    all_boxes, all_scores = [], []
    for level, (score, pred, prior) in enumerate(zip(cls_scores, bbox_preds, priors)):
        score = score.permute(0, 2, 3, 1)
        if self.use_sigmoid_cls:
            score = score.reshape(batch, -1).sigmoid()
        else:  # foreground first, background last, as mmdet labels them
            score = score.reshape(batch, -1, 2).softmax(-1)[..., 0]
        pred = pred.permute(0, 2, 3, 1).reshape(batch, -1, self.bbox_coder.encode_size)
        prior = prior.unsqueeze(0).expand(batch, -1, -1)
        if nms_pre > 0:  # mmdeploy's topk rewrite caps k at the level's anchor count
            score, index = score.topk(nms_pre, dim=1)
            pred = pred.gather(1, index.unsqueeze(-1).expand(-1, -1, pred.size(-1)))
            prior = prior.gather(1, index.unsqueeze(-1).expand(-1, -1, prior.size(-1)))
        boxes = get_box_tensor(self.bbox_coder.decode(prior, pred, max_shape=img_shape))
        if min_size >= 0:
            width = boxes[..., 2] - boxes[..., 0]
            height = boxes[..., 3] - boxes[..., 1]
            score = torch.where((width > min_size) & (height > min_size), score,
                                score.new_full((), -1.))
        # one score column per level: NMS suppresses only within a level
        columns = score.new_full((batch, score.size(1), num_levels), -1.)
        columns[..., level] = score
        all_boxes.append(boxes)
        all_scores.append(columns)
    boxes, scores = torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1)
    if not with_nms:
        return boxes, scores.max(-1, keepdim=True)[0]
    keep = cfg.get('max_per_img', 1000)
    return multiclass_nms(boxes, scores, keep, iou_threshold=cfg.nms.get('iou_threshold', 0.7),
                          score_threshold=0., pre_top_k=-1, keep_top_k=keep)


#: The modules of the functions rewritten here.
TARGET_MODULES = ('mmseg.models.decode_heads.psp_head', 'mmseg.models.utils.wrappers',
                  'mmdet.models.roi_heads.cascade_roi_head', 'mmdet.models.dense_heads.rpn_head')


def import_targets() -> None:
    """Imports the rewritten functions' modules now, not inside mmdeploy's rewriter context.

    On entering its context, mmdeploy imports the module of every registered rewrite's
    target. Importing mmdet's or mmseg's models there pulls in torchvision's models, whose
    video Swin registers functions with ``torch.fx.wrap``; on leaving, mmdeploy 1.3 removes
    the entries added meanwhile by list index, and torch >= 2.1 keeps them in a dict: the
    export of a model that needs neither (a bare backbone, a classifier) then ended in
    ``KeyError: -1``. Imported beforehand, the context adds none. A library that is not
    installed is left out: its rewrites have nothing to rewrite.
    """
    import importlib
    for module in TARGET_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            continue


import_targets()

__all__ = ['adaptive_avg_pool2d_any_size', 'cascade_roi_head__predict_bbox', 'import_targets',
           'ppm__forward', 'rpn_head__predict_by_feat', 'upsample__forward']
