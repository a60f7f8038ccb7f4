"""Names RUM shares across its stages."""

NONE = "none"
VARIANTS = ("vanilla", "shuffle", "rum-f", "rum")
DEFAULT_PARTS = 3
DEFAULT_SCORE = "confidence"
ALL = "all"
