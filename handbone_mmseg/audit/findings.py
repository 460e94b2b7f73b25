"""One piece of evidence against one annotation: what the rules and the model comparison
report, and what ``audit.rank`` combines."""
from dataclasses import dataclass

# Every kind of evidence, in the order the audit explains them (docs/audit.md).
RULE_KINDS = ('missing', 'pieces', 'order', 'swap', 'position', 'outside', 'area', 'overlap')
MODEL_KINDS = ('model', 'model_swap')
KINDS = RULE_KINDS + MODEL_KINDS
# Rule evidence that a neighbour's mistake can raise against a right label (a shifted bone
# overlaps its innocent neighbour, pushes it "out of order"): a model that confidently
# agrees with the label weighs it down (``rank.rank_findings``). A missing bone has no label
# to agree with, and a small extra piece hardly moves a Dice: those two stand as they are.
MODEL_CHECKED = tuple(k for k in RULE_KINDS if k not in ('missing', 'pieces'))


@dataclass(frozen=True)
class Finding:
    """Evidence that annotation (``image``, ``cls``) is wrong.

    Attributes:
        image: the image's file name.
        cls: the class name.
        kind: one of ``KINDS``.
        score: in (0, 1]: how strongly this evidence alone says the annotation is wrong.
        evidence: one sentence a person can check on the picture.
        partner: the other class of a likely swap or an unusual overlap, or None.
    """

    image: str
    cls: str
    kind: str
    score: float
    evidence: str
    partner: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f'finding kind must be one of {KINDS}, got {self.kind!r}')
        if not 0 < self.score <= 1:
            raise ValueError(f'finding score must lie in (0, 1], got {self.score}')
