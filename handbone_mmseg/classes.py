"""The 29 hand-bone classes, in the order used everywhere, and the label bit layout."""

CLASSES: tuple[str, ...] = (
    *(f'finger-{i}' for i in range(1, 20)),
    'Trapezium', 'Trapezoid', 'Capitate', 'Hamate', 'Scaphoid', 'Lunate',
    'Triquetrum', 'Pisiform', 'Radius', 'Ulna',
)
NUM_CLASSES: int = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# Multi-label maps travel through the stock mmcv/mmseg transforms as one int32 per pixel:
# bit c is class c and IGNORE_BIT marks padding. Bit 31 (the sign) stays unused so that
# padding values survive every integer and float path of OpenCV and torch.
IGNORE_BIT: int = 30
IGNORE_VALUE: int = 1 << IGNORE_BIT

# A fixed palette: 29 distinct colours (RGB), one per class, in CLASSES order.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228),
    (0, 60, 100), (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30),
    (100, 170, 30), (220, 220, 0), (175, 116, 175), (250, 0, 30), (165, 42, 42),
    (255, 77, 255), (0, 226, 252), (182, 182, 255), (0, 82, 0), (120, 166, 157),
    (110, 76, 0), (174, 57, 255), (199, 100, 0), (72, 0, 118), (255, 179, 240),
    (0, 125, 92), (209, 0, 151), (188, 208, 182), (0, 220, 176),
)
assert len(PALETTE) == NUM_CLASSES
