"""Numbers typed from the paper (Table 1, the text and its figures), so tests do not check the spec against itself."""

# Table 1, "output size" column, as printed in the paper (typed here, not read from the spec).
TABLE1_OUTPUT = {
    "conv1": (112, 112, 64), "pool1": (56, 56, 64), "conv2": (56, 56, 192), "pool2": (28, 28, 192),
    "inception_3a": (28, 28, 256), "inception_3b": (28, 28, 480), "pool3": (14, 14, 480),
    "inception_4a": (14, 14, 512), "inception_4b": (14, 14, 512), "inception_4c": (14, 14, 512),
    "inception_4d": (14, 14, 528), "inception_4e": (14, 14, 832), "pool4": (7, 7, 832),
    "inception_5a": (7, 7, 832), "inception_5b": (7, 7, 1024), "pool5": (1, 1, 1024), "fc": (1, 1, 1000),
}

# Exact weights and MACs per row (paper-facts.md section 1.2).
EXACT = {
    "conv1": (9_408, 118_013_952), "conv2": (114_688, 359_661_568),
    "inception_3a": (163_328, 128_049_152), "inception_3b": (388_096, 304_267_264),
    "inception_4a": (375_552, 73_608_192), "inception_4b": (448_512, 87_908_352),
    "inception_4c": (509_440, 99_850_240), "inception_4d": (604_672, 118_515_712),
    "inception_4e": (867_328, 169_996_288), "inception_5a": (1_042_432, 51_079_168),
    "inception_5b": (1_442_816, 70_697_984), "fc": (1_024_000, 1_024_000),
}
