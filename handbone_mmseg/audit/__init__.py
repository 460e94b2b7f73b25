"""Know the data before training on it: the data report and the label audit.

``analyze_data`` (``tools/analyze_data.py``) writes a data set's fingerprint: images,
patients, sizes, hands, wrist angles of train against test, per class areas, boxes, polygons
and points, which classes overlap. ``audit_labels`` (``tools/audit_labels.py``) ranks every
annotation by how suspicious it is: anatomy rules (``rules``) and, given out-of-fold
probability dumps, disagreement with a model that did not train on the image
(``disagreement``), combined per annotation (``rank``) and shown side by side with the
prediction (``review``). Everything reads the data through the loader training uses and
writes nothing into the data root. Members load on first use (``utils.lazy``): importing the
package imports neither torch nor mmseg.
"""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.api': ['AuditResult', 'analyze_data', 'audit_labels', 'check_out_dir'],
    '.disagreement': ['Agreement', 'compare', 'compare_all', 'model_findings', 'model_support'],
    '.findings': ['KINDS', 'MODEL_KINDS', 'RULE_KINDS', 'Finding'],
    '.fingerprint': ['ImageFacts', 'Source', 'collect_facts', 'data_sources', 'label_infos'],
    '.predictions': ['Predictions'],
    '.rank': ['AUDIT_COLUMNS', 'RankedLabel', 'planted_scores', 'rank_findings',
              'write_audit_csv'],
    '.report': ['DataReport', 'summarise', 'write_data_report'],
    '.review': ['render_audit_page'],
    '.rules': ['LabelStats', 'label_stats', 'rule_findings'],
    '.synthetic': ['write_synthetic_dump'],
})
